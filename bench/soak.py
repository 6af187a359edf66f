"""The full batch soak: 300 jobs against a fault-injecting server, killed (SIGKILL) three times and
resumed, then failed jobs rerun, as a cron job would live through a bad night.

The fake server runs in its own process (tests/fakeserver.py --answer-questions --chaos 0.26):
about 26 % of requests meet a fault, 429, 500, 503, a TCP reset, a slow reply, a body cut short,
malformed JSON or an empty reply, drawn from a seeded generator. The checks are the soak's point
(one answered line per job, each with its own question's answer, every line whole); the figures
are wall time, requests per job and the batch process's peak RSS.

    python bench/run.py soak            (SOAK_JOBS=300 SOAK_KILLS=3 SOAK_RATE=0.26 SOAK_SEED=26)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

Record = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent


def _peak_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _batch(cmd: list[str], env: dict[str, str], out: Path, kill_at: int | None) -> tuple[int, int, str]:
    """Run one `rlm batch`; SIGKILL it once the results file has `kill_at` lines. Returns (exit
    status or -9, peak RSS in KB, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read() if proc.stderr else b""), daemon=True)
    reader.start()
    while proc.poll() is None:
        peak = max(peak, _peak_rss_kb(proc.pid))
        if kill_at is not None and out.exists() and out.read_bytes().count(b"\n") >= kill_at:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    code = proc.wait()
    reader.join(10)
    return code, peak, b"".join(err).decode(errors="replace")


def bench_soak(tmp: Path, record: Record, rlm: list[str]) -> None:
    n = int(os.environ.get("SOAK_JOBS", "300"))
    kills = int(os.environ.get("SOAK_KILLS", "3"))
    rate = float(os.environ.get("SOAK_RATE", "0.26"))
    seed = int(os.environ.get("SOAK_SEED", "26"))
    work = tmp / "soak"
    work.mkdir()
    stats = work / "server.json"
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fakeserver.py"), "--answer-questions",
                               "--chaos", str(rate), "--seed", str(seed), "--delay", "0.2", "--stats", str(stats)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    base = server.stdout.readline().strip()
    jobs, out = work / "jobs.jsonl", work / "results.jsonl"
    pdf = ROOT / "fixtures" / "contract.pdf"
    jobs.write_text("".join(json.dumps({"id": f"job{i}", "files": [str(pdf)], "question": f"question {i}"}) + "\n"
                            for i in range(1, n + 1)))
    cmd = [*rlm, "batch", str(jobs), "-o", str(out), "-j", "8", "--model", "openai/gpt-4o-mini", "--api-base", base,
           "--no-cache"]
    env = dict(os.environ, RLM_RETRY_BASE="0.2")
    started = time.perf_counter()
    codes, peaks = [], []
    try:
        for k in range(1, kills + 1):
            code, peak, _ = _batch(cmd, env, out, kill_at=k * n // (kills + 1))
            codes.append(code)
            peaks.append(peak)
        code, peak, err = _batch(cmd, env, out, None)
        codes.append(code)
        peaks.append(peak)
        while code == 1 and "--rerun-failed" in err and len(codes) < kills + 4:
            code, peak, err = _batch([*cmd, "--rerun-failed"], env, out, None)
            codes.append(code)
            peaks.append(peak)
    finally:
        server.stdin.close()
        server.wait(30)
    wall = time.perf_counter() - started
    served = json.loads(stats.read_text())
    lines = [json.loads(line) for line in out.read_bytes().split(b"\n") if line]  # a cut line would raise here
    answered = [r for r in lines if r["status"] == "answered"]
    ids = sorted(r["id"] for r in answered)
    assert ids == sorted(f"job{i}" for i in range(1, n + 1)), f"answered {len(ids)} of {n}; exits {codes}"
    assert all(r["answer"] == f"answer to: {r['question']}" for r in answered), "an answer to another question"
    assert codes[-1] == 0, codes
    faults = sum(served["injected"].values())
    note = (f"{n} jobs, {kills} kills, exits {codes}; {served['requests']} requests, {faults} faults "
            f"({faults / max(1, served['requests']):.0%}): {served['injected']}; "
            f"{len(lines)} lines ({len(lines) - n} failed rows, rerun with --rerun-failed)")
    print(f"  soak: {note}", file=sys.stderr)
    record(f"soak: {n} jobs, {rate:.0%} faults, {kills} x kill -9: wall", wall, None, "s", "report", 1, note)
    record("soak: peak RSS of a batch process", max(peaks) / 1024, None, "MB", "report", 1, note)
    record("soak: requests per job", served["requests"] / n, None, "", "report", 1, note)
