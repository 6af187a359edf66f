"""`make bench`: performance figures as ratios against anchors measured in the same run.

Machines here are shared and noisy, so each figure is the median of several runs (the count is
printed). Results go to stdout as a table and to bench/results.json.
"""

from __future__ import annotations

import collections
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
RESULTS = ROOT / "bench" / "results.json"
RLM = [sys.executable, "-m", "rlmcli"]
rows: list[dict[str, object]] = []


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def median_of(n: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(n))


def medians_alternating(n: int, ours: Callable[[], float], anchor: Callable[[], float] | None) -> tuple[float, float | None]:
    """Runs ours and the anchor in turn, so a noisy spell on this shared machine hits both."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(n):
        a.append(ours())
        if anchor is not None:
            b.append(anchor())
    return statistics.median(a), (statistics.median(b) if b else None)


def record(figure: str, ours: float, anchor: float | None, unit: str, goal: str, runs: int, note: str = "") -> None:
    ratio = ours / anchor if anchor else None
    rows.append({"figure": figure, "ours": round(ours, 4), "anchor": None if anchor is None else round(anchor, 4),
                 "ratio": None if ratio is None else round(ratio, 3), "unit": unit, "goal": goal, "runs": runs,
                 "note": note})
    print(f"  {figure}: {ours:.3f} {unit}" + (f" vs {anchor:.3f} (ratio {ratio:.2f})" if ratio else "")
          + f"  goal {goal}", file=sys.stderr, flush=True)


def words(text: str) -> collections.Counter[str]:
    return collections.Counter(re.findall(r"\w+", text.lower()))


def similarity(a: str, b: str) -> float:
    """Bag-of-words overlap: shared word occurrences / the larger text's word count."""
    wa, wb = words(a), words(b)
    shared = sum((wa & wb).values())
    return shared / max(sum(wa.values()), sum(wb.values()), 1)


def bench_pdf(tmp: Path) -> None:
    have_pdftotext = shutil.which("pdftotext") is not None
    for name in ("R-intro.pdf", "fullrefman.pdf"):
        pdf = CORPUS / name
        if not pdf.exists():
            print(f"  (skipped {name}: {CORPUS} is not here)", file=sys.stderr)
            continue
        runs = 9 if pdf.stat().st_size < 5 << 20 else 3  # small files: more runs against the noise
        counter = iter(range(100))
        ours, anchor = medians_alternating(
            runs, lambda pdf=pdf, counter=counter: timed([*RLM, "ingest", str(pdf), "-w", str(tmp / f"pdf{next(counter)}")]),
            (lambda pdf=pdf: timed(["pdftotext", str(pdf), str(tmp / "anchor.txt")])) if have_pdftotext else None)
        record(f"ingest {name} (whole CLI run)", ours, anchor, "s", "ratio <= 1.0 vs pdftotext", runs)
        if have_pdftotext:
            pages = sorted((tmp / "pdf0" / "docs" / name.lower() / "pages").iterdir())
            ours_text = "\n".join(p.read_text() for p in pages)
            sim = similarity(ours_text, (tmp / "anchor.txt").read_text(errors="replace"))
            record(f"text similarity to pdftotext, {name}", sim, None, "", ">= 0.97", 1,
                   "bag-of-words overlap")


def bench_startup(tmp: Path) -> None:
    runs = 7
    help_time = median_of(runs, lambda: timed([*RLM, "--help"]))
    record("rlm --help", help_time, None, "s", "<= 0.150", runs)
    pdf = CORPUS / "fullrefman.pdf"
    if not pdf.exists():
        pdf = ROOT / "fixtures" / "contract.pdf"
    ws = tmp / "reingest"
    subprocess.run([*RLM, "ingest", str(pdf), "-w", str(ws)], check=True, capture_output=True)
    again = median_of(runs, lambda: timed([*RLM, "ingest", str(pdf), "-w", str(ws)]))
    record(f"re-ingest unchanged {pdf.name}, added to start-up", (again - help_time) * 1000,
           None, "ms", "<= 50", runs, f"{again * 1000:.0f} ms total minus `rlm --help`")


def llm_command() -> list[str] | None:
    """Simon Willison's `llm`, the anchor for the first request: $RLM_BENCH_LLM, else `llm` on PATH.
    Install it outside the project (`python -m venv /tmp/llmvenv && /tmp/llmvenv/bin/pip install llm`)."""
    found = os.environ.get("RLM_BENCH_LLM") or shutil.which("llm")
    return [found] if found else None


def bench_first_request(tmp: Path) -> None:
    """Start to the first model request, `rlm ask` on an ingested workspace, side by side with
    `llm` sending one prompt to the same fake server (when `llm` is installed), and against the
    time a bare `python -c "import litellm"` takes on the same machine in the same run."""
    small = small_workspace(tmp)
    stamps = tmp / "stamps.txt"
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fakeserver.py"), "--reply",
                               "```python\nFINAL('x')\n```", "--stamps", str(stamps)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    base = server.stdout.readline().strip()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    llm = llm_command()
    llm_home = tmp / "llm-home"
    llm_home.mkdir(exist_ok=True)
    # `llm` reaches an OpenAI-compatible server through a model declared in its user folder.
    (llm_home / "extra-openai-models.yaml").write_text(f"- model_id: bench\n  model_name: bench\n  api_base: \"{base}\"\n")
    llm_env = dict(os.environ, LLM_USER_PATH=str(llm_home), OPENAI_API_KEY="sk-bench")

    def stamped(cmd: list[str], cmd_env: dict[str, str]) -> float:
        stamps.write_text("")
        started = time.time()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cmd_env)
        return float(stamps.read_text().split()[0]) - started

    def first_request() -> float:
        return stamped([*RLM, "ask", "-w", str(small), "q", "--model", "openai/bench", "--api-base", base, "--no-cache",
                        "--max-iterations", "1", "-q"], env)

    def llm_first_request() -> float:
        assert llm is not None
        return stamped([*llm, "-m", "bench", "--no-log", "q"], llm_env)

    def import_litellm() -> float:
        return timed([sys.executable, "-c", "import litellm"], env=env)

    try:
        runs = 7
        ours, anchor = medians_alternating(runs, first_request, import_litellm)
        record("rlm ask: start to first model request", ours, anchor, "s",
               "<= 1.0 s; ratio <= 0.5 vs `python -c \"import litellm\"`", runs)
        if llm is None:
            print("  (skipped the side-by-side with `llm`: not installed; set RLM_BENCH_LLM)", file=sys.stderr)
        else:
            ours, anchor = medians_alternating(runs, first_request, llm_first_request)
            record("first model request: rlm ask vs llm, same fake server", ours, anchor, "s", "ratio <= 0.5", runs,
                   " ".join(llm))
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def bench_many_files(tmp: Path) -> None:
    many = tmp / "many"
    many.mkdir()
    for i in range(10_000):
        (many / f"f{i:05d}.txt").write_text(f"file {i} mentions clause {i}\n")
    elapsed = timed([*RLM, "ingest", str(many), "-w", str(tmp / "many-ws")])
    again = timed([*RLM, "ingest", str(many), "-w", str(tmp / "many-ws")])
    record("ingest a directory of 10,000 small files", elapsed, None, "s", "report", 1,
           f"re-ingest, all unchanged: {again:.2f} s")


_MEASURE = """
import os, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - t, usage.ru_maxrss // 1024)
"""


def peak_run(args: list[str]) -> tuple[int, float, int]:
    """(status, seconds, peak RSS MB) of a command, measured from a small wrapper process."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True, check=True).stdout
    status, seconds, peak = out.split()
    return int(status), float(seconds), int(peak)


def bench_hostile(tmp: Path) -> None:
    """Peak memory of ingest on inputs built to exhaust it: a 300 MB text file, a DOCX bomb."""
    import zipfile

    big = tmp / "big300.txt"
    line = "the agreement shall terminate upon notice of breach and payment is due within thirty days\n"
    with open(big, "w") as fh:
        for _ in range(300_000_000 // len(line)):
            fh.write(line)
    status, seconds, peak = peak_run([*RLM, "ingest", str(big), "-w", str(tmp / "big300-ws")])
    record("ingest a 300 MB text file: peak RSS", peak, None, "MB", "<= 1024", 1, f"{seconds:.1f} s, exit {status}")
    bomb = tmp / "bomb.docx"
    with zipfile.ZipFile(ROOT / "fixtures" / "contract.docx") as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename != "word/document.xml":
                zout.writestr(item, data)
                continue
            head, tail = data.split(b"<w:body>")
            with zout.open(item.filename, "w", force_zip64=True) as fh:
                fh.write(head + b"<w:body>")
                for _ in range(500):
                    fh.write((b"<w:p><w:r><w:t>" + b"a" * 1000 + b"</w:t></w:r></w:p>") * 1000)
                fh.write(tail[tail.rfind(b"</w:body>"):])
    status, seconds, peak = peak_run([*RLM, "ingest", str(bomb), "-w", str(tmp / "bomb-ws")])
    record(f"ingest a DOCX bomb ({bomb.stat().st_size / 1e6:.1f} MB inflating to ~0.5 GB): peak RSS", peak, None, "MB",
           "<= 1024", 1, f"{seconds:.2f} s, refused (exit {status})")


def bench_ocr(tmp: Path) -> None:
    """OCR on renderings of text-layer pages: word recall against the text layer, pages per second."""
    import collections

    pdf_path = CORPUS / "R-intro.pdf"
    if not pdf_path.exists():
        print("  (skipped OCR: no corpus)", file=sys.stderr)
        return
    import pypdfium2 as pdfium

    from rlmcli.workspace.extract import ocr

    problem = ocr.unavailable()
    if problem is not None:
        print(f"  (skipped OCR: {problem})", file=sys.stderr)
        return
    pdf = pdfium.PdfDocument(str(pdf_path))
    numbers = list(range(11, 31))
    truth = [pdf[n - 1].get_textpage().get_text_bounded() for n in numbers]
    images = [pdf[n - 1].render(scale=150 / 72, grayscale=True).to_pil() for n in numbers]

    def words(text: str) -> collections.Counter[str]:
        return collections.Counter(re.findall(r"[a-z0-9]+", text.lower()))

    speeds, recall = [], 0.0
    for _ in range(3):
        started = time.perf_counter()
        texts = ocr.images(images)
        speeds.append(len(images) / (time.perf_counter() - started))
        recall = sum(sum((words(a) & words(b)).values()) for a, b in zip(texts, truth, strict=True)) / sum(
            sum(words(b).values()) for b in truth)
    record(f"OCR word recall vs the text layer ({len(numbers)} R-intro pages at 150 dpi)", recall, None, "", ">= 0.98", 1)
    record("OCR pages per second (Tesseract, 2 threads)", statistics.median(speeds), None, "pages/s", ">= 1", 3)


def bench_big_workspace(tmp: Path) -> None:
    pdf = CORPUS / "fullrefman.pdf"
    if not pdf.exists():
        print("  (skipped the 10 M-token workspace: no corpus)", file=sys.stderr)
        return
    data = pdf.read_bytes()
    inputs = []
    for i in range(10):  # distinct bytes after %%EOF, so content addressing keeps ten documents
        p = tmp / f"refman-{i}.pdf"
        p.write_bytes(data + f"\n% copy {i}\n".encode())
        inputs.append(str(p))
    started = time.perf_counter()
    proc = subprocess.run([*RLM, "ingest", *inputs, "-w", str(tmp / "big")], check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    totals = json.loads((tmp / "big" / "manifest.json").read_text())["totals"]
    record(f"ingest 10 x fullrefman.pdf ({totals['tokens'] / 1e6:.1f} M tokens)", elapsed, None, "s", "<= 90", 1,
           f"peak RSS of any child process {peak_mb:.0f} MB")
    del proc


def small_workspace(tmp: Path) -> Path:
    """The fixture documents (not fixtures/encrypted.docx, which is there to fail)."""
    small = tmp / "small"
    if not small.exists():
        docs = [str(ROOT / "fixtures" / n) for n in ("contract.pdf", "contract.docx", "notes.md", "page.html")]
        subprocess.run([*RLM, "ingest", *docs, "-w", str(small)], check=True, capture_output=True)
    return small


def bench_sandbox(tmp: Path) -> None:
    import sandbox_bench

    small = small_workspace(tmp)
    sandbox_bench.bench_cells(small, record)
    if (tmp / "big").exists():
        sandbox_bench.bench_grep_search(tmp / "big", record)
    if CORPUS.exists():
        sandbox_bench.bench_search_quality(tmp, CORPUS, record)


def bench_engine(tmp: Path) -> None:
    import engine_bench

    small = small_workspace(tmp)
    engine_bench.bench_concurrency(small, record)
    engine_bench.bench_overhead(small, record)
    engine_bench.bench_needle(tmp, tmp / "big" if (tmp / "big").exists() else None, CORPUS, record)
    engine_bench.bench_batch(small, record)


def bench_scale(tmp: Path) -> None:
    import scale_bench

    scale_bench.bench_huge(tmp, CORPUS, record, RLM)


def bench_docsearch(tmp: Path) -> None:
    import scale_bench

    scale_bench.bench_doc_search(tmp, CORPUS, record)


def bench_filings(tmp: Path) -> None:
    import filings_bench

    filings_bench.bench_filings(tmp, CORPUS, record, RLM)


def bench_cluster(tmp: Path) -> None:
    import ray_bench

    ray_bench.bench_cluster(tmp, record, RLM)


def bench_soak(tmp: Path) -> None:
    import soak

    soak.bench_soak(tmp, record, RLM)


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "bench"))
    print(f"rlm benchmarks on {os.cpu_count()} cores; corpus {'present' if CORPUS.exists() else 'absent'}",
          file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        os.environ["RLM_HOME"] = str(tmp / "home")
        only = set(sys.argv[1:])  # `python bench/run.py engine` runs one group
        groups = {"startup": bench_startup, "first-request": bench_first_request, "pdf": bench_pdf, "many-files": bench_many_files, "hostile": bench_hostile, "ocr": bench_ocr, "big": bench_big_workspace, "sandbox": bench_sandbox,
                  "engine": bench_engine, "filings": bench_filings, "docsearch": bench_docsearch, "scale": bench_scale,
                  "cluster": bench_cluster, "soak": bench_soak}
        for name, bench in groups.items():
            if only and name not in only and not (name == "big" and only & {"sandbox", "engine"}):
                continue
            bench(tmp)
    print()
    print(f"{'figure':58} {'ours':>10} {'anchor':>10} {'ratio':>7}  goal")
    for r in rows:
        anchor = "" if r["anchor"] is None else f"{r['anchor']:.3f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['figure'][:58]:58} {r['ours']:>10.3f} {anchor:>10} {ratio:>7}  {r['goal']} {r['unit']}".rstrip())
    RESULTS.write_text(json.dumps({"time": time.time(), "rows": rows}, indent=1))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
