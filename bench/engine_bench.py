"""Engine figures for `make bench`: sub-call concurrency, loop overhead, needle in a haystack.

A fake OpenAI-compatible server on 127.0.0.1 (tests/fakeserver.py) plays the model, with
latency, reached over real HTTP by the standard-library fast path.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
Record = Callable[..., None]
NEEDLE = "The vault combination for the archive room is 31-17-42."


LOOK = "```python\nn = len(grep('zzz'))\n```"


def _run(ws_root: Path, server: object, script: list[str], **limits: object) -> tuple[object, object]:
    from rlmcli.ask import run_question
    from rlmcli.config import Settings
    from rlmcli.engine.events import Recorder
    from rlmcli.workspace.store import Workspace

    server.script("root", script)  # type: ignore[attr-defined]
    rec = Recorder()
    settings = Settings(model="openai/root", sub_model="openai/sub", api_base=server.base, cache=False,  # type: ignore[attr-defined]
                        **limits)  # type: ignore[arg-type]
    result = run_question(settings, Workspace.open(ws_root), "q", rec)
    return result, rec


def bench_concurrency(ws_root: Path, record: Record) -> None:
    from tests.fakeserver import FakeLLM, Reply

    server = FakeLLM().start()
    server.responder("sub", lambda prompt: Reply("ok", delay=1.0))
    try:
        _run(ws_root, server, [LOOK, "```python\nFINAL('x')\n```"])  # warm: imports, first connection
        times = []
        for _ in range(3):
            result, rec = _run(ws_root, server, ["```python\nr = llm_batch(['p'] * 64)\n```", "```python\nFINAL('x')\n```"],
                               concurrency=16, max_calls=100)
            start = next(e.time for e in rec.events if e.kind == "subcall_started")  # type: ignore[attr-defined]
            end = next(e.time for e in rec.events if e.kind == "subcall_finished")  # type: ignore[attr-defined]
            times.append(end - start)
        ideal = 64 / 16 * 1.0
        record("64 sub-calls at 1 s latency, concurrency 16", statistics.median(times), ideal, "s",
               "ratio <= 1.15 vs ideal", 3)
    finally:
        server.stop()


def bench_overhead(ws_root: Path, record: Record) -> None:
    from tests.fakeserver import FakeLLM

    server = FakeLLM().start()
    try:
        n = 30
        script = [LOOK] + ["```python\nx = 1\n```"] * (n - 2) + ["```python\nFINAL('done')\n```"]
        _run(ws_root, server, [LOOK, "```python\nFINAL('warm')\n```"])
        per_iter = []
        for _ in range(3):
            result, rec = _run(ws_root, server, list(script), max_iterations=n + 1)
            events = rec.events  # type: ignore[attr-defined]
            started = next(e.time for e in events if e.kind == "run_started")  # after the sandbox started
            finished = next(e.time for e in events if e.kind == "final_answer")
            model = sum(e.latency for e in events if e.kind == "model_call")
            cells = sum(e.duration for e in events if e.kind == "cell_output")
            per_iter.append((finished - started - model - cells) / n)
        record("engine overhead per iteration (no model latency, no user code)", statistics.median(per_iter) * 1000,
               None, "ms", "<= 30", 3, "sandbox start excluded")
    finally:
        server.stop()


def bench_needle(tmp: Path, big: Path | None, corpus: Path, record: Record) -> None:
    from rlmcli.tokens import count_tokens
    from rlmcli.workspace.ingest import ingest
    from tests.fakeserver import FakeLLM

    refman = corpus / "fullrefman.pdf"
    if not refman.exists():
        return
    memo = tmp / "memo.txt"
    memo.write_text("Facilities memo.\n" + "Routine maintenance notes.\n" * 200 + NEEDLE + "\n" + "More notes.\n" * 200)
    spaces = [("1 M", tmp / "needle-1m", [str(refman), str(memo)])]
    if big is not None:
        spaces.append(("10 M", big, [str(memo)]))
    server = FakeLLM(count_tokens=count_tokens).start()
    try:
        for label, root, files in spaces:
            ws, _ = ingest(files, root)
            tokens = ws.manifest()["totals"]["tokens"]
            script = [
                "Let me grep for it.\n```python\nhits = grep('vault combination')\nprint(hits)\n```",
                "```python\nh = hits[0]\nprint(read(h.doc, h.page, start=h.line, end=h.line))\n```",
                "```python\nFINAL(f'31-17-42 [{h.doc} p.{h.page}]')\n```",
            ]
            t = time.perf_counter()
            result, rec = _run(root, server, script)
            wall = time.perf_counter() - t
            root_tokens = sum(e.prompt_tokens + e.completion_tokens
                              for e in rec.events if e.kind == "model_call")  # type: ignore[attr-defined]
            assert "31-17-42" in result.answer, result.answer  # type: ignore[attr-defined]
            record(f"needle, {label}-token workspace ({tokens / 1e6:.1f} M): wall", wall, None, "s", "report", 1)
            record(f"needle, {label}: root tokens / workspace tokens", 100 * root_tokens / tokens, None, "%", "<= 1 %", 1,
                   f"{root_tokens:,} tokens read by the root model")
    finally:
        server.stop()


class _ServerProcess:
    """The fake server in its own process, as a real provider would be."""

    def __init__(self, reply: str, delay: float) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fakeserver.py"), "--reply", reply,
                                      "--delay", str(delay)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.base = self.proc.stdout.readline().strip()

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def bench_batch(ws_root: Path, record: Record) -> None:
    """200 jobs at 1 s model latency, 16 at a time."""
    from rlmcli.batch.driver import Batch, BatchReport
    from rlmcli.batch.jobs import Job
    from rlmcli.batch.results import ResultsFile
    from rlmcli.config import Settings

    server = _ServerProcess("```python\nn = len(grep('zzz'))\nFINAL('ok')\n```", float(os.environ.get("BENCH_DELAY", "1.0")))
    try:
        import tempfile

        n, j = 200, 16
        jobs = [Job(f"job{i}", f"question {i}", workspace=str(ws_root)) for i in range(n)]
        settings = Settings(model="openai/root", api_base=server.base, cache=False, concurrency=j)
        with tempfile.TemporaryDirectory() as tmp:
            runner = Batch(settings, jobs_at_once=j)
            t = time.perf_counter()
            report = runner.run(jobs, ResultsFile(Path(tmp) / "results.jsonl"), BatchReport())
            wall = time.perf_counter() - t
        assert report.done == n, report
        ideal = -(-n // j) * 1.0
        record(f"batch: {n} jobs at 1 s latency, -j {j}", wall, ideal, "s", "ratio <= 1.2 vs ideal", 1,
               f"overhead per job {(wall * j / n - 1.0) * 1000:.0f} ms (sandbox start, engine, results file)")
    finally:
        server.stop()
