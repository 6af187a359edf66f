"""Local versus Ray on this one machine: ingest of many PDFs, and a batch of many jobs.

A Ray head is started once (`ray start --head`, 2 CPUs) and both commands run as whole `rlm`
processes, alternating, so the Ray figure includes connecting to the cluster and starting workers
but not starting the head (on a cluster it is already up).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

Record = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent


def _start_head(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    with open(log, "wb") as out:
        head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
                                 "--num-cpus=2", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                                 "--disable-usage-stats"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    deadline = time.time() + 120
    while b"Ray runtime started" not in log.read_bytes():
        if head.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"ray head did not start: {log.read_text()[-1000:]}")
        time.sleep(0.2)
    return head, f"127.0.0.1:{port}"


def _stop(head: subprocess.Popen[bytes]) -> None:
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


def _run(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - started


def bench_cluster(tmp: Path, record: Record, rlm: list[str], runs: int = 3) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("  (ray not installed: pip install 'rlmcli[ray]'; cluster figures skipped)", file=sys.stderr)
        return
    import filings
    from engine_bench import _ServerProcess

    pdfs = tmp / "ray-filings"
    files, _ = filings.build(pdfs, companies=30)
    head, address = _start_head(tmp / "ray-head.log")
    env = dict(os.environ, RAY_ADDRESS=address)
    try:
        local: list[float] = []
        remote: list[float] = []
        for i in range(runs):
            for name, extra, out in (("local", [], local), ("ray", ["--executor", "ray"], remote)):
                ws = tmp / f"ray-ingest-{name}-{i}"
                out.append(_run([*rlm, "ingest", str(pdfs), "-w", str(ws)] + extra, env))
                if i == 0:
                    listing = subprocess.run([*rlm, "ls", "-w", str(ws), "--json"], capture_output=True, env=env).stdout
                    docs = json.loads(listing)["documents"]
                    if name == "local":
                        expected = docs
                    elif docs != expected:
                        print("  WARNING: the Ray ingest listing differs from the local one", file=sys.stderr)
                shutil.rmtree(ws, ignore_errors=True)
        record(f"ingest {len(files)} filing PDFs: Ray (2 CPUs, head up) vs local", statistics.median(remote),
               statistics.median(local), "s", "report; listing identical", runs,
               "one machine: Ray pays for connecting and starting workers; it pays off with more machines")

        server = _ServerProcess("```python\nn = len(grep('fee'))\nFINAL('ok')\n```", 0.5)
        try:
            ws = tmp / "ray-batch-ws"
            subprocess.run([*rlm, "ingest", str(ROOT / "fixtures" / "contract.pdf"), "-w", str(ws)], env=env,
                           capture_output=True, check=True)
            jobs = tmp / "ray-jobs.jsonl"
            n = 64
            jobs.write_text("".join(json.dumps({"id": f"j{k}", "workspace": str(ws), "question": f"question {k}"}) + "\n"
                                    for k in range(n)))
            local, remote = [], []
            for i in range(runs):
                for name, extra, out in (("local", [], local), ("ray", ["--executor", "ray"], remote)):
                    results = tmp / f"ray-results-{name}-{i}.jsonl"
                    out.append(_run([*rlm, "batch", str(jobs), "-o", str(results), "-j", "8", "--concurrency", "8",
                                     "--model", "openai/root", "--api-base", server.base, "--no-cache"] + extra, env))
            record(f"batch: {n} jobs at 0.5 s latency, -j 8: Ray vs local", statistics.median(remote),
                   statistics.median(local), "s", "report", runs, f"ideal {n // 8 * 0.5:.1f} s")
        finally:
            server.stop()
    finally:
        _stop(head)
