"""What a sandbox costs before the first cell: `python bench/sandbox_start.py [WORKSPACE] [N]`.

Prints medians of N runs: `Sandbox(ws).start()` plus a first cell (wall, and the CPU of this
process and its children), the next batch job's first cell after a fresh process was started
at the end of the previous run (with 20 ms and 100 ms of model latency between), and `rlm ask`
from launch to its first model request (the fake server on 127.0.0.1 stamps its arrival).
Without WORKSPACE, one is ingested from fixtures/ into a temporary directory.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _cpu() -> float:
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def starts(ws: Path, n: int) -> None:
    from rlmcli.sandbox import Sandbox

    walls, cpus = [], []
    for _ in range(n):
        cpu, t = _cpu(), time.perf_counter()
        sb = Sandbox(ws).start()
        sb.run("x = 1")
        walls.append(time.perf_counter() - t)
        sb.close()
        cpus.append(_cpu() - cpu)
    print(f"start + first cell: wall {statistics.median(walls) * 1000:.1f} ms (min {min(walls) * 1000:.1f}), "
          f"CPU {statistics.median(cpus) * 1000:.1f} ms")


def job_switch(ws: Path, n: int) -> None:
    from rlmcli.sandbox import Sandbox

    with Sandbox(ws) as sb:
        for latency in (0.02, 0.1):
            waits = []
            for _ in range(n):
                sb.run("x = 1")
                sb.reset()  # the end of a run that borrowed it (Engine.run)
                time.sleep(latency)  # the next run's first model request
                sb.reset()  # the next run's start: nothing ran in the fresh process, so kept
                t = time.perf_counter()
                sb.run("x = 1")
                waits.append(time.perf_counter() - t)
            print(f"next job's first cell after {latency * 1000:.0f} ms of model latency: "
                  f"{statistics.median(waits) * 1000:.1f} ms")


def first_request(ws: Path, n: int) -> None:
    from tests.fakeserver import FakeLLM

    server = FakeLLM().start()
    stamp: dict[str, float] = {}

    def respond(prompt: str) -> str:
        stamp.setdefault("t", time.monotonic())
        return "```python\nFINAL('done')\n```"

    server.responder("m", respond)
    env = dict(os.environ, RLM_HOME=str(ws.parent / "home"))
    times = []
    try:
        for _ in range(n):
            stamp.clear()
            t = time.monotonic()
            subprocess.run([sys.executable, "-m", "rlmcli", "ask", "-w", str(ws), "q", "--model", "openai/m",
                            "--api-base", server.base, "--no-cache", "-q"], env=env, capture_output=True)
            times.append(stamp["t"] - t)
    finally:
        server.stop()
    print(f"rlm ask, launch to first model request: {statistics.median(times) * 1000:.0f} ms "
          f"(min {min(times) * 1000:.0f})")


def main() -> None:
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            ws = Path(sys.argv[1]).resolve()
        else:
            from rlmcli.workspace.ingest import ingest

            ws = ingest([str(ROOT / "fixtures" / f) for f in ("contract.pdf", "contract.docx", "notes.md")],
                        Path(tmp) / "ws")[0].root
        starts(ws, n)
        job_switch(ws, max(5, n // 2))
        first_request(ws, max(5, n // 2))


if __name__ == "__main__":
    main()
