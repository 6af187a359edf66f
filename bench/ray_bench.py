"""Local versus Ray on this one machine: ingest of the filings, a one-job batch and a 64-job batch.

A two-node cluster is started once (`ray start --head` and `ray start --address`, 1 CPU each, as
the README's recipe does on separate machines), and every command runs as a whole `rlm` process,
in alternating order (local first in even rounds, Ray first in odd ones), so the Ray figure
includes connecting and starting workers but not starting the cluster (on a cluster it is up).
The one-job batch is also timed with rlm starting a local Ray itself (no RAY_ADDRESS).

Standalone: `python bench/ray_bench.py [RUNS]` prints the figures (`make bench` records them).
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Record = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent
FILINGS = ROOT.parent / "shared" / "corpus" / "filings"
RAY = Path(sys.executable).with_name("ray")


def _start_node(root: Path, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = root / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(RAY), "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                                 "--disable-usage-stats", *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    deadline = time.time() + 120
    while b"Ray runtime started" not in log.read_bytes():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"ray start ({name}) did not start: {log.read_text()[-1000:]}")
        time.sleep(0.2)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its daemons
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _run(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - started


def _alternating(runs: int, local: Callable[[int], float], ray: Callable[[int], float]) -> tuple[list[float], list[float]]:
    """Wall times of both, local first in even rounds and Ray first in odd ones."""
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    for i in range(runs):
        for name in (("local", "ray") if i % 2 == 0 else ("ray", "local")):
            walls[name].append((local if name == "local" else ray)(i))
    return walls["local"], walls["ray"]


def _span(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (range {min(values):.2f}-{max(values):.2f})"


def bench_cluster(tmp: Path, record: Record, rlm: list[str], runs: int = 5) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("  (ray not installed: pip install 'rlmcli[ray]'; cluster figures skipped)", file=sys.stderr)
        return
    from engine_bench import _ServerProcess

    if FILINGS.is_dir():
        pdfs, what = FILINGS, f"the {len(list(FILINGS.glob('*.pdf')))} filings of shared/corpus"
    else:
        import filings

        pdfs = tmp / "ray-filings"
        files, _ = filings.build(pdfs, companies=30)
        what = f"{len(files)} generated filing PDFs"
    root = Path(tempfile.mkdtemp(prefix="rlmbench", dir="/tmp"))  # Ray's socket paths stay short
    (root / "home").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node_env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", HOME=str(root / "home"))
    nodes = [_start_node(root, "head", ["--head", f"--port={port}", f"--temp-dir={root}/ray",
                                        "--include-dashboard=false"], node_env)]
    try:
        nodes.append(_start_node(root, "worker", [f"--address=127.0.0.1:{port}"], node_env))
        env = dict(os.environ, HOME=str(root / "home"))
        env.pop("RAY_ADDRESS", None)
        cluster = dict(env, RAY_ADDRESS=f"127.0.0.1:{port}")

        def ingest(name: str, extra: list[str]) -> Callable[[int], float]:
            def go(i: int) -> float:
                ws = tmp / f"ray-ingest-{name}-{i}"
                took = _run([*rlm, "ingest", str(pdfs), "-w", str(ws), *extra], cluster)
                if i == 0:
                    listing = subprocess.run([*rlm, "ls", "-w", str(ws), "--json"], capture_output=True, env=env).stdout
                    (tmp / f"listing-{name}.json").write_text(json.dumps(json.loads(listing)["documents"]))
                shutil.rmtree(ws, ignore_errors=True)
                return took
            return go

        local, remote = _alternating(runs, ingest("local", []), ingest("ray", ["--executor", "ray"]))
        same = (tmp / "listing-local.json").read_text() == (tmp / "listing-ray.json").read_text()
        record(f"ingest {what}: Ray (2 nodes x 1 CPU, up) vs local", statistics.median(remote),
               statistics.median(local), "s", "report" + ("; listing identical" if same else "; LISTINGS DIFFER"), runs,
               f"Ray {_span(remote)}; local {_span(local)}")

        server = _ServerProcess("```python\nn = len(grep('fee'))\nFINAL('ok')\n```", 0.5)
        try:
            ws = tmp / "ray-batch-ws"
            subprocess.run([*rlm, "ingest", str(ROOT / "fixtures" / "contract.pdf"), "-w", str(ws)], env=env,
                           capture_output=True, check=True)
            for n, j in ((1, 1), (64, 8)):
                jobs = tmp / f"ray-jobs-{n}.jsonl"
                jobs.write_text("".join(json.dumps({"id": f"j{k}", "workspace": str(ws), "question": f"question {k}"})
                                        + "\n" for k in range(n)))

                def batch(name: str, where: dict[str, str], extra: list[str],
                          n: int = n, j: int = j, jobs: Path = jobs) -> Callable[[int], float]:
                    def go(i: int) -> float:
                        results = tmp / f"ray-results-{name}-{n}-{i}.jsonl"
                        return _run([*rlm, "batch", str(jobs), "-o", str(results), "-j", str(j), "--concurrency",
                                     str(j), "--model", "openai/root", "--api-base", server.base, "--no-cache", *extra],
                                    where)
                    return go

                local, remote = _alternating(runs, batch("local", env, []),
                                                batch("ray", cluster, ["--executor", "ray"]))
                record(f"batch: {n} job{'s' if n > 1 else ''} at 0.5 s latency, -j {j}: Ray (up) vs local",
                       statistics.median(remote), statistics.median(local), "s", "report", runs,
                       f"Ray {_span(remote)}; local {_span(local)}")
                if n == 1:
                    local, started = _alternating(runs, batch("local-again", env, []),
                                                     batch("ray-local", env, ["--executor", "ray"]))
                    record("batch: 1 job, rlm starting a local Ray vs local", statistics.median(started),
                           statistics.median(local), "s", "report", runs,
                           f"Ray {_span(started)}; local {_span(local)}")
        finally:
            server.stop()
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "bench"))

    def show(figure: str, ours: float, anchor: float | None, unit: str, goal: str, runs: int, note: str = "") -> None:
        ratio = f" ({ours / anchor:.2f}x)" if anchor else ""
        print(f"{figure}: {ours:.2f} vs {anchor:.2f} {unit}{ratio}, {runs} runs; {note}; {goal}", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        bench_cluster(Path(scratch), show, [sys.executable, "-m", "rlmcli"], int(sys.argv[1]) if len(sys.argv) > 1 else 5)
