"""Batch and ingest on a real Ray cluster: a head started here on 127.0.0.1 with 2 CPUs.

`make test` installs the ray extra, so these run, never skip; the tests start `ray` as a program.

The module runs in one xdist group (see the Makefile's --dist loadgroup), so one head serves all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM, Reply
from tests.test_batch import _answering, _jobs_file, _question, _results, kill_after_rows

pytestmark = pytest.mark.xdist_group("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


AUTH: dict[str, str] = {}  # the head's token file, for clients: RAY_AUTH_TOKEN_PATH


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ray start --head --block` in its own process group; the whole group is stopped after.
    It requires a token (Ray's token authentication), kept in a file of the test's own: rlm must
    find it and use it as a Ray client does, and nothing is written to ~/.ray."""
    import uuid

    port = _free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    log = tmp_path_factory.mktemp("ray") / "head.log"
    token = log.with_name("auth_token")
    token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    AUTH["RAY_AUTH_TOKEN_PATH"] = str(token)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    with open(log, "wb") as out:
        head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                                 "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start exited: {log.read_text()[-2000:]}")
        if b"Ray runtime started" in log.read_bytes():
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the Ray head did not start in 90 s: {log.read_text()[-2000:]}")
    yield address
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()


def _ray_env(address: str) -> dict[str, str | None]:
    """A client's environment: the address and where the token is, not the auth mode (rlm sets it)."""
    return {"RAY_ADDRESS": address, "RLM_RETRY_BASE": "0.01", "RAY_AUTH_MODE": None, **AUTH}


def _batch(server: FakeLLM, env: dict[str, str | None], *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_rlm("batch", *args, "--model", "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache", env=env)


def test_batch_on_ray_gives_the_local_results_and_one_bound_across_the_cluster(
        ray_head: str, server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(delay=0.2))
    jobs = _jobs_file(tmp_path, 8)
    outputs = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray"]), ("ship", ["--executor", "ray", "--ship"])):
        out = tmp_path / f"{name}.jsonl"
        before = len(server.requests)
        server.max_in_flight = 0
        result = _batch(server, _ray_env(ray_head), str(jobs), "-o", str(out), "-j", "4", "--concurrency", "2", *extra)
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        outputs[name] = sorted((r["id"], r["status"], r["answer"]) for r in _results(out))
        assert server.max_in_flight <= 2, name  # --concurrency holds across Ray workers
        asked = [_question(r["messages"][1]["content"]) for r in server.requests[before:] if r["messages"]]
        assert sorted(asked) == sorted(f"question {i}" for i in range(1, 9)), name
    assert outputs["ray"] == outputs["local"] == outputs["ship"]
    assert outputs["ray"][0] == ("job1", "answered", "answer to: question 1")
    ship_rows = _results(tmp_path / "ship.jsonl")
    assert {r["workspace"] for r in ship_rows} == {r["workspace"] for r in _results(tmp_path / "local.jsonl")}


def test_a_killed_ray_batch_resumes_without_asking_finished_jobs_again(
        ray_head: str, server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(delay=0.3))
    jobs, out = _jobs_file(tmp_path, 16), tmp_path / "results.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env.update(RLM_RETRY_BASE="0.01", RAY_ADDRESS=ray_head, **AUTH)
    first = kill_after_rows(["-j", "2", "--executor", "ray", "--model", "openai/gpt-4o-mini", "--api-base", server.base,
                             "--no-cache"], jobs, out, 4, env)
    assert 4 <= len(first) < 16
    time.sleep(1.0)  # requests of tasks that were in flight when the driver died land before we count
    asked_before = len(server.requests)
    resumed = _batch(server, _ray_env(ray_head), str(jobs), "-o", str(out), "-j", "4", "--executor", "ray")
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    rows = _results(out)
    assert sorted(r["id"] for r in rows) == sorted(f"job{i}" for i in range(1, 17))  # none lost, none twice
    asked_again = {_question(r["messages"][1]["content"]) for r in server.requests[asked_before:] if r["messages"]}
    assert asked_again and not asked_again & {f"question {i[3:]}" for i in first}
    assert f"{len(first)} already in" in resumed.stderr.decode()


def _listing(ws: Path) -> dict:
    shown = run_rlm("ls", "-w", str(ws), "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    data.pop("workspace")
    return data


def test_ingest_on_ray_lists_exactly_what_a_local_ingest_lists(ray_head: str, tmp_path: Path) -> None:
    src = tmp_path / "in"
    shutil.copytree(FIXTURES, src, ignore=shutil.ignore_patterns("*.sh"))
    (src / "copy-of-notes.md").write_bytes((src / "notes.md").read_bytes())  # a duplicate, decided by the driver
    (src / "blob.bin").write_bytes(bytes(range(256)) * 64)  # binary, found in a directory: skipped
    results = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray"]), ("ship", ["--executor", "ray", "--ship"])):
        done = run_rlm("ingest", str(src), "-w", str(tmp_path / name), *extra, env=_ray_env(ray_head))
        err = done.stderr.decode()
        # the unreadable file found in the folder is named alone, in the same words, and fails nothing
        assert "encrypted.docx: skipped, unreadable: an OLE2 compound file" in err, err[-3000:]
        assert done.returncode == 0
        results[name] = (_listing(tmp_path / name), err.splitlines()[-1].split(" in ")[0])
    assert results["ray"] == results["local"] == results["ship"]
    listing, line = results["ray"]
    assert listing["totals"]["documents"] >= 6 and "1 unreadable (named above)" in err
    again = run_rlm("ingest", str(src), "-w", str(tmp_path / "ray"), "--executor", "ray", env=_ray_env(ray_head))
    assert "unchanged" in again.stderr.decode() and _listing(tmp_path / "ray") == listing


def test_an_unreachable_head_is_one_clear_line_within_30_seconds(tmp_path: Path, server: FakeLLM) -> None:
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    done = run_rlm("ingest", str(FIXTURES / "notes.md"), "-w", str(tmp_path / "ws"), "--executor", "ray",
                   env={"RAY_ADDRESS": address})
    assert time.monotonic() - started < 30
    err = done.stderr.decode()
    assert done.returncode == 1 and f"cannot reach the Ray head at {address} (RAY_ADDRESS)" in err
    assert "Traceback" not in err and not (tmp_path / "ws").exists()  # no empty workspace left behind
    server.responder("gpt-4o-mini", _answering())
    out = tmp_path / "r.jsonl"
    done = _batch(server, {"RAY_ADDRESS": address}, "--questions", str(FIXTURES / "notes.md"),
                  str(FIXTURES / "notes.md"), "-o", str(out), "--executor", "ray")
    assert done.returncode == 1 and f"cannot reach the Ray head at {address}" in done.stderr.decode()
    assert not server.requests


def test_a_bad_ray_address_is_a_usage_error(tmp_path: Path) -> None:
    done = run_rlm("ingest", str(FIXTURES / "notes.md"), "-w", str(tmp_path / "ws"), "--executor", "ray",
                   env={"RAY_ADDRESS": "headnode"})
    assert done.returncode == 2 and "RAY_ADDRESS='headnode' is not HOST:PORT" in done.stderr.decode()


def _two_step(prompt: str) -> Reply:
    """First call: look (and name the job in the output); second: answer, later for some jobs."""
    import re

    asked = _question(prompt)
    if asked:
        return Reply(f"```python\nprint('asked: ' + {asked!r})\nn = len(grep('fee'))\n```")
    found = re.search(r"asked: ([^\n'\"]+)", prompt)
    q = found.group(1).strip() if found else "?"
    delay = 6.0 if "SLOW" in q else 2.0 if q == "question 1" else 0.1
    return Reply(f"```python\nFINAL('done: ' + {q!r})\n```", delay=delay)


def test_the_batch_budget_counts_what_running_ray_jobs_have_spent(
        ray_head: str, server: FakeLLM, tmp_path: Path) -> None:
    """job1 and job2 run at once against a cap of 1.2 times job1's cost: on Ray as locally, the
    batch never spends more than the cap, and what it could not finish is left to a rerun."""
    server.responder("gpt-4o-mini", _two_step)
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "job1", "files": [str(FIXTURES / "contract.pdf")], "question": "question 1"}) + "\n")
    calibrate = tmp_path / "calibrate.jsonl"
    assert _batch(server, _ray_env(ray_head), str(one), "-o", str(calibrate)).returncode == 0
    job1_cost = _results(calibrate)[0]["usage"]["cost"]
    assert job1_cost > 0
    jobs = tmp_path / "jobs.jsonl"
    questions = ["question 1", "question 2 SLOW", "question 3", "question 4", "question 5"]
    jobs.write_text("".join(json.dumps({"id": f"job{i}", "files": [str(FIXTURES / "contract.pdf")], "question": q}) + "\n"
                            for i, q in enumerate(questions, start=1)))
    for name, extra in (("local", []), ("ray", ["--executor", "ray"])):
        out = tmp_path / f"{name}.jsonl"
        done = _batch(server, _ray_env(ray_head), str(jobs), "-o", str(out), "-j", "2",
                      "--max-cost", f"{job1_cost * 1.2:.10f}", *extra)
        assert done.returncode == 3, done.stderr.decode()[-2000:]
        rows = _results(out)
        answered = [r["id"] for r in rows if r["status"] == "answered"]
        # Every request books its worst case with the batch (on Ray, with the limiter actor) before
        # it is sent: job1 and job2 run at once, so at most one of them can finish within the cap.
        assert len(answered) <= 1 and set(answered) <= {"job1", "job2"}, (name, rows)
        assert all(r["status"] == "skipped" or r.get("limit") == "batch-max-cost" for r in rows if r["status"] != "answered")
        assert sum((r.get("usage") or {}).get("cost") or 0 for r in rows) <= job1_cost * 1.2, name


def _ray_daemons() -> set[int]:
    """PIDs of Ray's per-node daemons (not workers) on this machine."""
    out = set()
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = status.read_bytes()
        except OSError:
            continue
        if any(name in cmd for name in (b"raylet", b"gcs_server", b"DashboardAgent", b"RuntimeEnvAgent")):
            out.add(int(status.parent.name))
    return out


def test_without_ray_address_a_local_ray_starts_and_stops_with_the_command(tmp_path: Path) -> None:
    before = _ray_daemons()
    token = tmp_path / "auth_token"  # a new local Ray enables token auth and would write ~/.ray/auth_token
    token.write_text("0123456789abcdef" * 4)
    done = run_rlm("ingest", str(FIXTURES / "notes.md"), str(FIXTURES / "contract.pdf"), "-w", str(tmp_path / "ray"),
                   "--executor", "ray", env={"RAY_ADDRESS": None, "RAY_AUTH_TOKEN_PATH": str(token)})
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert "WARNING" not in done.stderr.decode()  # Ray's own chatter stays out of a CLI's stderr
    local = run_rlm("ingest", str(FIXTURES / "notes.md"), str(FIXTURES / "contract.pdf"), "-w", str(tmp_path / "local"))
    assert local.returncode == 0 and _listing(tmp_path / "ray") == _listing(tmp_path / "local")
    deadline = time.time() + 15  # the local instance's daemons exit with it
    while _ray_daemons() - before and time.time() < deadline:
        time.sleep(0.2)
    assert not _ray_daemons() - before
