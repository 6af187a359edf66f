"""A 100M-token workspace for `make bench` (issue: beyond one machine's comfort): ingest time,
the sandbox's peak memory when model code touches `context`, the first grep, search latency."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

Record = Callable[..., None]
MANUALS = ("fullrefman.pdf", "R-exts.pdf", "R-intro.pdf", "R-admin.pdf", "R-lang.pdf", "R-ints.pdf", "R-data.pdf",
           "R-FAQ.pdf")


def build_text_corpus(tmp: Path, corpus: Path, target_tokens: float) -> list[Path]:
    """Plain-text documents of about `target_tokens` in all: the R manuals' pages (as our ingest
    extracts them), copied with a marker line on every page so each copy is its own content."""
    from rlmcli.workspace.ingest import ingest

    seed_ws, _ = ingest([str(corpus / n) for n in MANUALS if (corpus / n).exists()], tmp / "seed")
    reader = seed_ws.reader
    pages = [reader.read_page(doc, n) for doc, rec in reader.documents.items() for n in range(1, rec["pages"] + 1)]
    seed_tokens = reader.totals()["tokens"]
    copies = max(1, round(target_tokens / seed_tokens))
    out = []
    for i in range(copies):
        path = tmp / "huge-src" / f"manuals-copy-{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for j, page in enumerate(pages):
                fh.write(f"[copy {i} page {j}]\n{page}\n\n")
        out.append(path)
    shutil.rmtree(tmp / "seed", ignore_errors=True)
    return out


PROBE = """
import resource, time
t = time.perf_counter(); n = len(context); t_len = time.perf_counter() - t
t = time.perf_counter(); h = grep('confidence interval', max_hits=100000); t_grep = time.perf_counter() - t
t = time.perf_counter(); h2 = grep(r'lazy[- ]load\\w*', max_hits=100000); t_regex = time.perf_counter() - t
t = time.perf_counter(); piece = context[n // 2:n // 2 + 100000]; t_slice = time.perf_counter() - t
print(n, t_len, t_grep, t_regex, t_slice, len(h), len(h2), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_huge(tmp: Path, corpus: Path, record: Record, rlm: list[str], target_tokens: float = 100e6) -> None:
    from rlmcli.sandbox import Sandbox

    if not all((corpus / n).exists() for n in MANUALS[:3]):
        print("  (skipped the 100 M-token workspace: no corpus)", file=sys.stderr)
        return
    reuse = os.environ.get("RLM_BENCH_HUGE_WS")  # a workspace this benchmark built before: probes only
    if reuse:
        ws = Path(reuse)
        totals = json.loads((ws / "manifest.json").read_text())["totals"]
        label = f"{totals['tokens'] / 1e6:.0f} M tokens"
    else:
        files = build_text_corpus(tmp, corpus, target_tokens)
        ws = tmp / "huge"
        started = time.perf_counter()
        subprocess.run([*rlm, "ingest", *map(str, files), "-w", str(ws)], check=True, capture_output=True)
        elapsed = time.perf_counter() - started
        shutil.rmtree(tmp / "huge-src", ignore_errors=True)
        totals = json.loads((ws / "manifest.json").read_text())["totals"]
        label = f"{totals['tokens'] / 1e6:.0f} M tokens"
        record(f"ingest {len(files)} text files, {label}", elapsed, None, "s", "report", 1,
               f"{totals['pages']:,} pages; workspace {sum(f.stat().st_size for f in ws.rglob('*') if f.is_file()) / 1e9:.2f} GB")
    subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], capture_output=True)  # cold, when allowed
    with Sandbox(ws) as sb:
        result = sb.run(PROBE, timeout=600)
        n, t_len, t_grep, t_regex, t_slice, hits, hits_re, peak_kb = result.stdout.split()
        search_times = []
        for q in ["lazy loading of package data", "generalized linear model with binomial family",
                  "read a csv file with headers", "plot a histogram of residuals", "environment variables at startup"] * 3:
            search_times.append(sb.run(f"p = search({q!r}, k=10)").duration)
    record(f"sandbox peak after len(context), grep, a slice, {label}", int(peak_kb) / 1024, None, "MB", "<= 1024", 1,
           f"len(context) = {int(n):,} characters in {float(t_len):.2f} s; a 100,000-character slice {float(t_slice) * 1000:.0f} ms")
    rg = shutil.which("rg")
    anchor = None
    if rg:
        t = time.perf_counter()
        subprocess.run([rg, "-i", "-n", "-F", "-g", "!text.txt", "confidence interval", str(ws / "docs")], capture_output=True)
        anchor = time.perf_counter() - t
    record(f"first grep (literal), {label}", float(t_grep), anchor, "s", "<= 3 (vs rg -i -n, also cold)", 1, f"{hits} hits")
    record(f"first grep (regex), {label}", float(t_regex), None, "s", "report", 1, f"{hits_re} hits")
    record(f"search (k=10), {label}", statistics.median(search_times) * 1000, None, "ms", "<= 100", len(search_times),
           f"slowest {max(search_times) * 1000:.0f} ms")


def bench_doc_search(tmp: Path, corpus: Path, record: Record) -> None:
    """Search that knows documents: titles named in questions (the filings group measures filings)."""
    import itertools

    from rlmcli.workspace.ingest import ingest
    from rlmcli.workspace.query import Searcher

    names = {"R-ints.pdf": "R Internals", "R-FAQ.pdf": "R FAQ", "R-data.pdf": "R Data Import/Export",
             "R-exts.pdf": "Writing R Extensions", "R-intro.pdf": "An Introduction to R",
             "R-admin.pdf": "R Installation and Administration", "R-lang.pdf": "R Language Definition",
             "Apache-2.0": "Apache License", "GPL-3": "GNU General Public License version 3",
             "LGPL-2.1": "GNU Lesser General Public License", "MPL-2.0": "Mozilla Public License"}
    if not all((corpus / n).exists() for n in names):
        return
    ws, _ = ingest([str(corpus / n) for n in names], tmp / "titled")
    topics = ["how is memory allocated", "what are the conditions for distributing copies", "installing packages",
              "environment variables", "is there any warranty", "how are function arguments matched",
              "reading data from a file", "what happens on termination"]
    from rlmcli.workspace import query

    def first(doc_aware: bool) -> int:
        saved = query.DOC_BOOST, query.NAMED_DOCS
        if not doc_aware:
            query.DOC_BOOST, query.NAMED_DOCS = 0.0, 0
        try:
            searcher = Searcher(ws.reader)
            return sum(searcher.search(f"{title}: {topic}", k=1)[0].doc == ws.reader.resolve(n)
                       for (n, title), topic in itertools.product(names.items(), topics))
        finally:
            query.DOC_BOOST, query.NAMED_DOCS = saved

    total = len(names) * len(topics)
    record(f"title named in the query ranks its document first ({total} queries)", first(True) / total,
           first(False) / total, "", "1.0", 1)
