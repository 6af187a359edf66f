"""`make bench` group `filings`: the 16 real SEC filings in ../shared/corpus/filings.

* whole CLI ingest of the set against `pdftotext` over the same files (alternating runs);
* page fidelity against `pdftotext -layout` (bag-of-words), letter-spaced pages;
* what table cells and rebuilt pages cost on top of PDFium's own page text (in-process);
* named-filing picks ("3M 2018 10-K") and evidence recall@5 for questions naming a company and a
  period, on the real set and among 210 synthetic look-alike filings used as distractors (the real
  set is 16 documents; only the synthetic ones make it hundreds).
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Record = Callable[..., None]

# One question per filing whose answer is a figure printed in it; the evidence is every page of
# that filing holding the figure.
QUESTIONS = [
    ("What were 3M's net sales in 2018?", "3M_2018_10K.pdf", "32,765"),
    ("What was Adobe's total revenue for the quarter ended June 2, 2023?", "ADOBE_2022Q2_10Q.pdf", "4,816"),
    ("What were Amcor's net sales in the second quarter of fiscal 2023?", "AMCOR_2023Q2_10Q.pdf", "3,642"),
    ("What was AMD's net revenue in 2020?", "AMD_2020_10K.pdf", "9,763"),
    ("What were Boeing's revenues in 2018?", "BOEING_2018_10K.pdf", "101,127"),
    ("What were Coca-Cola's net operating revenues in 2017?", "COCACOLA_2017_10K.pdf", "35,410"),
    ("What were Costco's net sales in the first quarter of fiscal 2023?", "COSTCO_2023Q1_EARNINGS.pdf", "53,437"),
    ("What were Foot Locker's sales for the quarter ended October 29, 2022?", "FOOTLOCKER_2023Q3_10Q.pdf", "2,173"),
    ("What were General Mills' net sales in fiscal 2023?", "GENERALMILLS_2023_annualreport.pdf", "20,094.2"),
    ("What was Intel's net revenue in the fourth quarter of 2022?", "INTEL_2022Q4_EARNINGS.pdf", "14,042"),
    ("What were Johnson & Johnson's reported sales in the fourth quarter of 2022?", "JOHNSON_JOHNSON_2022Q4_EARNINGS.pdf",
     "23,706"),
    ("How much did Lockheed Martin raise in senior notes in its May 2023 8-K?", "LOCKHEEDMARTIN_2023_8K_dated-2023-05-25.pdf",
     "2,000,000,000"),
    ("What were Netflix's revenues in 2022?", "NETFLIX_2022_10K.pdf", "31,615,550"),
    ("What were Nike's revenues in fiscal 2023?", "NIKE_2023_10K.pdf", "51,217"),
]


def _words(text: str) -> collections.Counter[str]:
    return collections.Counter(re.findall(r"\w+", text.lower()))


def similarity(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    larger = max(sum(wa.values()), sum(wb.values()))
    return sum((wa & wb).values()) / larger if larger else 1.0


def _timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def bench_filings(tmp: Path, corpus: Path, record: Record, rlm: list[str]) -> None:
    folder = corpus / "filings"
    files = sorted(folder.glob("*.pdf"))
    if not files:
        print(f"  (skipped filings: {folder} is not here)")
        return
    pages = _ingest_speed(tmp, files, record, rlm)
    _fidelity(tmp, files, pages, record)
    _table_cost(files, record)
    _named(tmp, folder, files, record)


def _ingest_speed(tmp: Path, files: list[Path], record: Record, rlm: list[str]) -> int:
    have = shutil.which("pdftotext") is not None
    runs, ours, anchor = 5, [], []
    for i in range(runs):
        ours.append(_timed([*rlm, "ingest", *map(str, files), "-w", str(tmp / f"filings-ws{i}")]))
        if have:
            anchor.append(_timed(["sh", "-c", 'for f in "$@"; do pdftotext "$f" /dev/null; done', "sh", *map(str, files)]))
    listing = json.loads((tmp / "filings-ws0" / "manifest.json").read_text())["documents"]
    pages = sum(d["pages"] for d in listing.values())
    record(f"ingest {len(files)} real filings ({pages:,} pages), whole CLI run", statistics.median(ours),
           statistics.median(anchor) if anchor else None, "s", "ratio <= 1.0 vs pdftotext over the same files", runs,
           f"runs {min(ours):.2f}-{max(ours):.2f} s" + (f"; pdftotext {min(anchor):.2f}-{max(anchor):.2f} s" if anchor else ""))
    return pages


def _fidelity(tmp: Path, files: list[Path], pages: int, record: Record) -> None:
    if shutil.which("pdftotext") is None:
        return
    from rlmcli.workspace.extract.pdf_text import letter_spaced_share
    from rlmcli.workspace.reader import WorkspaceReader

    reader = WorkspaceReader(tmp / "filings-ws0")
    scores: list[tuple[float, str, int]] = []
    spaced = 0
    for path in files:
        doc = reader.resolve(path.name)
        theirs = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True).stdout.split("\f")
        for number in range(1, reader.meta(doc)["pages"] + 1):
            ours = reader.read_page(doc, number)
            scores.append((similarity(ours, theirs[number - 1]), path.name, number))
            spaced += letter_spaced_share(ours) > 0.05 and letter_spaced_share(theirs[number - 1]) <= 0.05
    worst = min(scores)
    record(f"page text vs pdftotext -layout, {len(scores):,} filing pages: mean", statistics.mean(s for s, _, _ in scores),
           None, "", ">= 0.98", 1, f"min {worst[0]:.3f} ({worst[1]} p.{worst[2]}); "
           f"{sum(s < 0.95 for s, _, _ in scores)} pages below 0.95; {spaced} letter-spaced pages pdftotext reads whole")


def _table_cost(files: list[Path], record: Record) -> None:
    """Seconds of the whole extraction in one process, against PDFium's own page text alone."""
    import ctypes

    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    from rlmcli.workspace.extract.pdf_text import page_text

    def run(full: bool) -> float:
        started = time.perf_counter()
        for path in files:
            pdf = pdfium.PdfDocument(str(path))
            for index in range(len(pdf)):
                page = raw.FPDF_LoadPage(pdf.raw, index)
                textpage = raw.FPDFText_LoadPage(page)
                if full:
                    page_text(textpage)
                else:
                    count = raw.FPDFText_CountChars(textpage)
                    raw.FPDFText_GetText(textpage, 0, count, (ctypes.c_ushort * (2 * count + 1))())
                raw.FPDFText_ClosePage(textpage)
                raw.FPDF_ClosePage(page)
            pdf.close()
        return time.perf_counter() - started

    full, plain = [], []
    for _ in range(3):
        full.append(run(True))
        plain.append(run(False))
    share = (statistics.median(full) - statistics.median(plain)) / statistics.median(full)
    record("table cells and rebuilt pages: share of PDF text extraction", 100 * share, None, "%", "small (<= 20%)", 3,
           f"{statistics.median(full):.2f} s with them, {statistics.median(plain):.2f} s PDFium text alone, one core")


def _query(filing: dict[str, Any]) -> str:
    quarter = f" {filing['quarter']}" if filing["quarter"] else ""
    return f"{filing['company']} {filing['fiscal_year']}{quarter} {filing['form']}"


def _named(tmp: Path, folder: Path, files: list[Path], record: Record) -> None:
    import filings as synthetic

    from rlmcli.workspace import query
    from rlmcli.workspace.ingest import ingest
    from rlmcli.workspace.query import Searcher
    from rlmcli.workspace.reader import WorkspaceReader

    labels = [json.loads(line) for line in (folder / "filings.jsonl").read_text().splitlines() if line.strip()]
    real = WorkspaceReader(tmp / "filings-ws0")
    distractors, _ = synthetic.build(tmp / "lookalike-pdf")
    ingest([str(f) for f in distractors] + [str(f) for f in files], tmp / "mixed-ws")
    mixed = WorkspaceReader(tmp / "mixed-ws")
    for reader, where in ((real, f"{len(files)} real filings"), (mixed, f"{len(files)} real among {len(distractors)} synthetic")):
        searcher = Searcher(reader)
        picks = sum(bool(r) and r[0].doc == reader.resolve(f["file"]) for f in labels for r in [searcher.docs(_query(f), k=1)])
        record(f"named filing ranked first ('3M 2018 10-K'), {where}", picks / len(labels), None, "", "1.0", 1,
               f"{picks} of {len(labels)} queries")
        recall = {}
        for aware in (True, False):
            saved = query.DOC_BOOST, query.NAMED_DOCS
            if not aware:
                query.DOC_BOOST, query.NAMED_DOCS = 0.0, 0
            try:
                searcher = Searcher(reader)
                hits = 0
                for question, name, figure in QUESTIONS:
                    doc = reader.resolve(name)
                    gold = {n for n in range(1, reader.meta(doc)["pages"] + 1) if figure in reader.read_page(doc, n)}
                    hits += any(p.doc == doc and p.page in gold for p in searcher.search(question, k=5))
                recall[aware] = hits / len(QUESTIONS)
            finally:
                query.DOC_BOOST, query.NAMED_DOCS = saved
        record(f"evidence recall@5, {len(QUESTIONS)} questions naming a company and period, {where}", recall[True],
               recall[False] or None, "", "higher than without document ranking", 1,
               f"without document ranking {recall[False]:.2f}")
