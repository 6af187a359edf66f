"""Batch and ingest on a real two-node Ray cluster on 127.0.0.1: a head and a worker node started
with `ray start` (1 CPU each), as the README's multi-machine recipe does on separate machines.

`make test` installs the ray extra, so these run, never skip; the tests start `ray` as a program.
The module runs in one xdist group (see the Makefile's --dist loadgroup), so one cluster serves all;
the node-loss test, last, takes the worker node away. Every process the tests start is stopped
and every folder removed; nothing is written to ~/.ray (HOME points into the cluster's folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM, Reply
from tests.test_batch import _answering, _jobs_file, _question, _results, kill_after_rows

pytestmark = pytest.mark.xdist_group("ray")
RAY = Path(sys.executable).with_name("ray")
RAY_NOISE = ("logging.cc", "rpc_client", "worker.py:", "Traceback", "\x1b[", "WARNING", "(raylet)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _short_dir(prefix: str) -> Path:
    """A folder directly under /tmp: Ray's socket paths inside it must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def _noise(stderr: bytes) -> list[str]:
    """Lines on stderr that are Ray's, not rlm's."""
    return [line for line in stderr.decode(errors="replace").splitlines() if any(n in line for n in RAY_NOISE)]


@dataclass
class Cluster:
    address: str
    root: Path  # everything the cluster writes: Ray's temp dir, the nodes' TMPDIRs, HOME, logs
    token: Path
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def tmpdir(self, node: str) -> Path:
        """The node's TMPDIR: where its workers unpack shipped workspaces."""
        return self.root / f"tmp-{node}"

    def env(self, **extra: str | None) -> dict[str, str | None]:
        """A client's environment: the address and where the token is, not the auth mode (rlm picks it)."""
        return {"RAY_ADDRESS": self.address, "RLM_RETRY_BASE": "0.01", "RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN": None,
                "RAY_AUTH_TOKEN_PATH": str(self.token), "HOME": str(self.root / "home"), **extra}

    def stop(self, node: str, sig: int = signal.SIGTERM) -> None:
        proc = self.nodes.pop(node, None)
        if proc is None:
            return
        if sig == signal.SIGKILL:  # the node dies at once, all its daemons together
            os.killpg(proc.pid, sig)
        else:  # `ray start --block` stops its daemons on SIGTERM in a few seconds (its group, in tens)
            proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything of the node's still there


def _start_node(root: Path, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`ray start ... --block` in its own process group, waited for until it says it runs."""
    log = root / f"{name}.log"
    tmp = root / f"tmp-{name}"
    tmp.mkdir()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(RAY), "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                                 "--disable-usage-stats", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env, TMPDIR=str(tmp)), start_new_session=True)
    deadline = time.time() + 120
    while b"Ray runtime started" not in log.read_bytes():
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"ray start ({name}) did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc


def _kill_leftovers(marker: str) -> None:
    """Processes of ours still running from `marker` (a Ray worker outliving its node): by pid."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _cluster(with_token: bool, worker: bool) -> Cluster:
    import uuid

    root = _short_dir("rlmray")
    (root / "home").mkdir()
    token = root / "auth_token"
    token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    port = _free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HOME=str(root / "home"),
               RAY_AUTH_MODE="token" if with_token else "disabled", RAY_AUTH_TOKEN_PATH=str(token))
    cluster = Cluster(f"127.0.0.1:{port}", root, token)
    try:
        cluster.nodes["head"] = _start_node(root, "head", ["--head", f"--port={port}", f"--temp-dir={root}/ray",
                                                           "--include-dashboard=false"], env)
        if worker:
            cluster.nodes["worker"] = _start_node(root, "worker", [f"--address={cluster.address}"], env)
    except BaseException:
        _stop_cluster(cluster)
        raise
    return cluster


def _stop_cluster(cluster: Cluster) -> None:
    for node in ("worker", "head"):
        cluster.stop(node)
    _kill_leftovers(str(cluster.root))
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Cluster]:
    """A head and a worker node, 1 CPU each, requiring a token (Ray's token authentication) kept in
    a file of the test's own: rlm must find it through RAY_AUTH_TOKEN_PATH as a Ray client does."""
    cluster = _cluster(with_token=True, worker=True)
    yield cluster
    _stop_cluster(cluster)


def _batch(server: FakeLLM, env: dict[str, str | None], *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_rlm("batch", *args, "--model", "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache", env=env)


def _asked(server: FakeLLM, since: int = 0) -> list[str]:
    return [_question(r["messages"][1]["content"]) for r in server.requests[since:] if r["messages"]]


def _copies(cluster: Cluster, node: str) -> set[str]:
    base = cluster.tmpdir(node) / "rlm-ray-workspaces"
    return {p.name for p in base.iterdir()} if base.exists() else set()


def test_batch_on_ray_gives_the_local_results_and_one_bound_across_the_cluster(
        ray_cluster: Cluster, server: FakeLLM, tmp_path: Path) -> None:
    """Eight jobs at once fill both nodes (4 quarter-CPU jobs each). With --ship each node unpacks
    its own copy of the workspace, the traces come back to the driver's workspace, and when the
    batch ends no copy is left on either node; a copy a crashed batch left two days ago is swept."""
    server.responder("gpt-4o-mini", _answering(delay=0.5))
    jobs = _jobs_file(tmp_path, 8)
    stale = ray_cluster.tmpdir("worker") / "rlm-ray-workspaces" / "0123456789abcdef-0badf00d"
    fresh = stale.with_name("fedcba9876543210-cafecafe")  # another batch's copy, in use
    for copy in (stale, fresh):
        copy.mkdir(parents=True)
        (copy / "manifest.json").write_text("{}")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    outputs = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray"]), ("ship", ["--executor", "ray", "--ship"])):
        out = tmp_path / f"{name}.jsonl"
        before = len(server.requests)
        server.max_in_flight = 0
        result = _batch(server, ray_cluster.env(), str(jobs), "-o", str(out), "-j", "8", "--concurrency", "2", *extra)
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        assert not _noise(result.stderr), result.stderr.decode()[-3000:]
        outputs[name] = sorted((r["id"], r["status"], r["answer"]) for r in _results(out))
        assert server.max_in_flight <= 2, name  # --concurrency holds across Ray workers and nodes
        assert sorted(_asked(server, before)) == sorted(f"question {i}" for i in range(1, 9)), name
    assert outputs["ray"] == outputs["local"] == outputs["ship"]
    assert outputs["ray"][0] == ("job1", "answered", "answer to: question 1")
    ship_rows, local_rows = _results(tmp_path / "ship.jsonl"), _results(tmp_path / "local.jsonl")
    assert {r["workspace"] for r in ship_rows} == {r["workspace"] for r in local_rows}
    ran_on = set()
    for row in ship_rows:  # each trace is in the driver's workspace and names the copy its job read
        trace = Path(row["trace"])
        assert trace.parent == Path(row["workspace"]) / "runs" and trace.is_file()
        started = json.loads(trace.read_text().splitlines()[0])
        ran_on |= {node for node in ("head", "worker") if started["workspace"].startswith(
            str(ray_cluster.tmpdir(node) / "rlm-ray-workspaces"))}
    assert ran_on == {"head", "worker"}
    assert _copies(ray_cluster, "head") == set() and not (ray_cluster.tmpdir("head") / "rlm-ray-workspaces").exists()
    assert _copies(ray_cluster, "worker") == {fresh.name}
    shutil.rmtree(fresh.parent)


def test_a_killed_ray_batch_resumes_without_asking_finished_jobs_again(
        ray_cluster: Cluster, server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(delay=0.3))
    jobs, out = _jobs_file(tmp_path, 16), tmp_path / "results.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env.update({k: v for k, v in ray_cluster.env().items() if v is not None})
    first = kill_after_rows(["-j", "2", "--executor", "ray", "--model", "openai/gpt-4o-mini", "--api-base", server.base,
                             "--no-cache"], jobs, out, 4, env)
    assert 4 <= len(first) < 16
    time.sleep(1.0)  # requests of tasks that were in flight when the driver died land before we count
    asked_before = len(server.requests)
    resumed = _batch(server, ray_cluster.env(), str(jobs), "-o", str(out), "-j", "4", "--executor", "ray")
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    rows = _results(out)
    assert sorted(r["id"] for r in rows) == sorted(f"job{i}" for i in range(1, 17))  # none lost, none twice
    asked_again = set(_asked(server, asked_before))
    assert asked_again and not asked_again & {f"question {i[3:]}" for i in first}
    assert f"{len(first)} already in" in resumed.stderr.decode()


def _listing(ws: Path) -> dict:
    shown = run_rlm("ls", "-w", str(ws), "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    data.pop("workspace")
    return data


def test_ingest_on_ray_lists_exactly_what_a_local_ingest_lists(ray_cluster: Cluster, tmp_path: Path) -> None:
    src = tmp_path / "in"
    shutil.copytree(FIXTURES, src, ignore=shutil.ignore_patterns("*.sh"))
    (src / "copy-of-notes.md").write_bytes((src / "notes.md").read_bytes())  # a duplicate, decided by the driver
    (src / "blob.bin").write_bytes(bytes(range(256)) * 64)  # binary, found in a directory: skipped
    results = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray"]), ("ship", ["--executor", "ray", "--ship"])):
        debug = ["--debug"] if name == "ray" else []
        done = run_rlm(*debug, "ingest", str(src), "-w", str(tmp_path / name), *extra, env=ray_cluster.env())
        err = done.stderr.decode()
        # the unreadable file found in the folder is named alone, in the same words, and fails nothing
        assert "encrypted.docx: skipped, unreadable: an OLE2 compound file" in err, err[-3000:]
        assert done.returncode == 0 and not _noise(done.stderr), err[-3000:]
        results[name] = (_listing(tmp_path / name), err.splitlines()[-1].split(" in ")[0])
        if debug:  # --debug names the file Ray's own messages went to instead of stderr
            log = Path(err.split("rlm: Ray's log for this run: ", 1)[1].splitlines()[0])
            assert "Connected to Ray cluster" in log.read_text()
    assert results["ray"] == results["local"] == results["ship"]
    listing, line = results["ray"]
    assert listing["totals"]["documents"] >= 6 and "1 unreadable (named above)" in err
    again = run_rlm("ingest", str(src), "-w", str(tmp_path / "ray"), "--executor", "ray", env=ray_cluster.env())
    assert "unchanged" in again.stderr.decode() and _listing(tmp_path / "ray") == listing


def test_the_token_mode_follows_what_the_head_requires(ray_cluster: Cluster, server: FakeLLM, tmp_path: Path) -> None:
    """The module's head requires a token: without one, or with a wrong one, one line says so. A
    head without authentication is used without a token, though a stale ~/.ray/auth_token (as an
    old local Ray run left) lies in HOME: that file once made every batch fail against such a head."""
    notes = str(FIXTURES / "notes.md")
    none = run_rlm("ingest", notes, "-w", str(tmp_path / "a"), "--executor", "ray",
                   env=ray_cluster.env(RAY_AUTH_TOKEN_PATH=None))
    assert none.returncode == 1 and not _noise(none.stderr), none.stderr.decode()[-2000:]
    assert f"the Ray head at {ray_cluster.address} (RAY_ADDRESS) requires a token" in none.stderr.decode()
    wrong = run_rlm("ingest", notes, "-w", str(tmp_path / "b"), "--executor", "ray",
                    env=ray_cluster.env(RAY_AUTH_TOKEN="not-the-token"))
    assert wrong.returncode == 1 and "rejected the token from RAY_AUTH_TOKEN" in wrong.stderr.decode()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    open_head = _cluster(with_token=False, worker=False)
    try:
        home = open_head.root / "home"
        (home / ".ray").mkdir()
        (home / ".ray" / "auth_token").write_text("a-token-from-an-old-local-run")
        server.responder("gpt-4o-mini", _answering())
        out, questions = tmp_path / "results.jsonl", tmp_path / "q.txt"
        questions.write_text("What is on the shortlist?\n")
        env = open_head.env(RAY_AUTH_TOKEN_PATH=None)
        done = _batch(server, env, "--questions", str(questions), notes, "-o", str(out), "--executor", "ray")
        assert done.returncode == 0 and not _noise(done.stderr), done.stderr.decode()[-3000:]
        assert [r["status"] for r in _results(out)] == ["answered"]
    finally:
        _stop_cluster(open_head)


def test_an_unreachable_head_is_one_clear_line(tmp_path: Path, server: FakeLLM) -> None:
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    done = run_rlm("ingest", str(FIXTURES / "notes.md"), "-w", str(tmp_path / "ws"), "--executor", "ray",
                   env={"RAY_ADDRESS": address})
    err = done.stderr.decode()
    assert done.returncode == 1 and f"cannot reach the Ray head at {address} (RAY_ADDRESS)" in err
    assert not _noise(done.stderr) and not (tmp_path / "ws").exists()  # no empty workspace left behind
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


def _frame(kind: int, flags: int, payload: bytes, stream: int = 1) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _header(name: bytes, value: bytes) -> bytes:  # HPACK: a literal field, not indexed, not Huffman-coded
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


class _FakeHead:
    """A port that accepts and never says a word; with `answer_first`, it first answers one
    GetClusterId call as a Ray GCS would (so rlm goes on to ray.init, which then blocks in Ray's
    native code waiting for the rest of the GCS)."""

    OK = (_frame(4, 0, b"", 0) + _frame(1, 4, _header(b":status", b"200") + _header(b"content-type", b"application/grpc"))
          + _frame(0, 0, b"\x00\x00\x00\x00\x00") + _frame(1, 5, _header(b"grpc-status", b"0")))

    def __init__(self, answer_first: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer_first = answer_first
        self.answered = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.answer_first and not self.answered.is_set():
                conn.recv(65536)
                conn.sendall(self.OK)
                conn.close()
                self.answered.set()
            else:
                self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_head_that_never_answers_is_one_line_and_sigterm_stops_a_blocked_connect(
        tmp_path: Path, server: FakeLLM) -> None:
    """Three runs at once: a silent port (rejected by the protocol check); a port that answers that
    check and then leaves ray.init blocked in native code (the deadline still holds, and Ray's own
    complaints go to its log file, not stderr); the same, stopped with SIGTERM while blocked."""
    silent, blocking, stopped = _FakeHead(False), _FakeHead(True), _FakeHead(True)
    procs = {}
    try:
        for name, head in (("silent", silent), ("blocking", blocking), ("stopped", stopped)):
            env = dict(os.environ, RAY_ADDRESS=head.address, HOME=str(tmp_path))
            procs[name] = subprocess.Popen([sys.executable, "-m", "rlmcli", "batch", "--questions",
                                            str(FIXTURES / "notes.md"), str(FIXTURES / "notes.md"),
                                            "-o", str(tmp_path / f"{name}.jsonl"), "--executor", "ray",
                                            "--model", "openai/gpt-4o-mini", "--api-base", server.base],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert stopped.answered.wait(60)
        time.sleep(2.0)  # into ray.init, which keeps retrying the GCS
        procs["stopped"].send_signal(signal.SIGTERM)
        outs = {name: proc.communicate(timeout=120) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        for head in (silent, blocking, stopped):
            head.close()
    codes = {name: proc.returncode for name, proc in procs.items()}
    assert codes == {"silent": 1, "blocking": 1, "stopped": 130}, outs
    for name, (_, err) in outs.items():
        assert not _noise(err), (name, err.decode()[-2000:])
    assert f"cannot reach the Ray head at {silent.address} (RAY_ADDRESS): it accepted the connection but did not " \
           "answer as Ray's GCS" in outs["silent"][1].decode()
    blocked = outs["blocking"][1].decode()
    assert f"could not connect to the Ray head at {blocking.address} (RAY_ADDRESS) within 30 s" in blocked
    log = Path(blocked.split("(Ray's log: ", 1)[1].split(")", 1)[0])
    assert "Failed to connect to GCS" in log.read_text()  # Ray's C++ warning, kept off stderr
    assert outs["stopped"][1].decode().strip() == "rlm: interrupted"
    assert not server.requests
    http = run_rlm("ingest", str(FIXTURES / "notes.md"), "-w", str(tmp_path / "ws"), "--executor", "ray",
                   env={"RAY_ADDRESS": server.base.split("//")[1].split("/")[0]})
    assert http.returncode == 1  # an HTTP server that hangs up on HTTP/2
    assert "it closed the connection without answering as Ray's GCS" in http.stderr.decode()


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
        ray_cluster: Cluster, server: FakeLLM, tmp_path: Path) -> None:
    """job1 and job2 run at once against a cap of 1.2 times job1's cost: on Ray as locally, the
    batch never spends more than the cap, and what it could not finish is left to a rerun."""
    server.responder("gpt-4o-mini", _two_step)
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "job1", "files": [str(FIXTURES / "contract.pdf")], "question": "question 1"}) + "\n")
    calibrate = tmp_path / "calibrate.jsonl"
    assert _batch(server, ray_cluster.env(), str(one), "-o", str(calibrate)).returncode == 0
    job1_cost = _results(calibrate)[0]["usage"]["cost"]
    assert job1_cost > 0
    jobs = tmp_path / "jobs.jsonl"
    questions = ["question 1", "question 2 SLOW", "question 3", "question 4", "question 5"]
    jobs.write_text("".join(json.dumps({"id": f"job{i}", "files": [str(FIXTURES / "contract.pdf")], "question": q}) + "\n"
                            for i, q in enumerate(questions, start=1)))
    for name, extra in (("local", []), ("ray", ["--executor", "ray"])):
        out = tmp_path / f"{name}.jsonl"
        done = _batch(server, ray_cluster.env(), str(jobs), "-o", str(out), "-j", "2",
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


def test_without_ray_address_a_local_ray_starts_and_stops_and_leaves_nothing(tmp_path: Path) -> None:
    """A local instance: no token file in HOME (Ray would write ~/.ray/auth_token, which turns
    later clients and heads to token mode), no session folder in TMPDIR, no process."""
    before = _ray_daemons()
    home, tmp = _short_dir("rlmhome"), _short_dir("rlmtmp")
    try:
        done = run_rlm("ingest", str(FIXTURES / "notes.md"), str(FIXTURES / "contract.pdf"), "-w",
                       str(tmp_path / "ray"), "--executor", "ray",
                       env={"RAY_ADDRESS": None, "RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN": None,
                            "RAY_AUTH_TOKEN_PATH": None, "HOME": str(home), "TMPDIR": str(tmp)})
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        assert not _noise(done.stderr), done.stderr.decode()[-3000:]  # Ray's chatter stays off a CLI's stderr
        assert list(home.iterdir()) == [] and list(tmp.iterdir()) == []
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    local = run_rlm("ingest", str(FIXTURES / "notes.md"), str(FIXTURES / "contract.pdf"), "-w", str(tmp_path / "local"))
    assert local.returncode == 0 and _listing(tmp_path / "ray") == _listing(tmp_path / "local")
    deadline = time.time() + 15  # the local instance's daemons exit with it
    while _ray_daemons() - before and time.time() < deadline:
        time.sleep(0.2)
    assert not _ray_daemons() - before


def test_a_ray_error_is_one_line_with_its_cause_and_no_colour_codes() -> None:
    import traceback

    import ray.exceptions

    from rlmcli.cluster import describe

    try:
        raise ValueError("the PDF is encrypted")
    except ValueError as exc:
        failed = ray.exceptions.RayTaskError("_remote_run", traceback.format_exc(), exc, pid=7, ip="10.0.0.7")
    assert "\x1b[" in str(failed) and "\n" in str(failed)  # what Ray's message looks like
    assert describe(failed) == "ValueError: the PDF is encrypted"
    crashed = describe(ray.exceptions.WorkerCrashedError())
    assert crashed.startswith("The worker died unexpectedly") and "\x1b" not in crashed


def _batch_in_background(server: FakeLLM, cluster: Cluster, jobs: Path, out: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    env.update({k: v for k, v in cluster.env().items() if v is not None})
    return subprocess.Popen([sys.executable, "-m", "rlmcli", "batch", str(jobs), "-o", str(out), *args, "--executor",
                             "ray", "--model", "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _lose_node_mid_batch(server: FakeLLM, cluster: Cluster, jobs: Path, out: Path, node: str, before: int,
                         asked: int) -> tuple[subprocess.Popen[bytes], bytes]:
    """A batch of `-j 8` on the cluster whose `node` is killed once `asked` jobs wait on the model."""
    proc = _batch_in_background(server, cluster, jobs, out, "-j", "8")
    try:
        _when_asked(server, before, asked, proc)
        cluster.stop(node, signal.SIGKILL)
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    return proc, err


def _when_asked(server: FakeLLM, since: int, distinct: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 180
    while len(set(_asked(server, since))) < distinct and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert len(set(_asked(server, since))) >= distinct


def test_losing_nodes_mid_batch_reruns_lost_jobs_and_every_batch_ends_with_its_rows(
        ray_cluster: Cluster, server: FakeLLM, tmp_path: Path) -> None:
    """Last in the module: it takes the cluster away. Eight jobs fill both nodes; the worker node
    is killed (SIGKILL to its whole `ray start` group) while its jobs wait on the model. The
    limiter lives on the driver's node, so the batch goes on: the lost jobs run again on the head,
    every job gets exactly one row, and the batch ends with its summary line and nothing of Ray's.
    Then the head is killed under a second batch: the jobs it had started get failed rows naming
    the cause, the ones it had not started get none (a rerun runs them), and it ends in order."""
    server.responder("gpt-4o-mini", _answering(delay=4.0))
    (tmp_path / "one").mkdir()
    jobs, out = _jobs_file(tmp_path / "one", 8), tmp_path / "one.jsonl"
    # six of eight jobs waiting on the model: both nodes busy
    proc, err = _lose_node_mid_batch(server, ray_cluster, jobs, out, "worker", 0, 6)
    assert not _noise(err), err.decode()[-3000:]
    rows = _results(out)
    assert sorted(r["id"] for r in rows) == sorted(f"job{i}" for i in range(1, 9))  # one row each
    asked = _asked(server)
    assert {q for q in asked if asked.count(q) > 1}  # the lost node's jobs ran again
    assert proc.returncode == 0 and all(r["status"] == "answered" for r in rows), err.decode()[-3000:]
    assert "rlm batch: 8 done, 0 failed" in err.decode()

    (tmp_path / "two").mkdir()
    jobs, out = _jobs_file(tmp_path / "two", 12), tmp_path / "two.jsonl"
    before = len(server.requests)
    proc, err = _lose_node_mid_batch(server, ray_cluster, jobs, out, "head", before, 3)  # the head runs 4, 4 wait
    assert not _noise(err), err.decode()[-3000:]
    rows = _results(out)
    assert proc.returncode == 1 and sorted(r["id"] for r in rows) == sorted(f"job{i}" for i in range(1, 9))
    assert all(r["status"] == "failed" and r["error"].startswith(
        f"the Ray cluster was lost: the Ray head at {ray_cluster.address} stopped answering") for r in rows)
    assert "rlm batch: 0 done, 8 failed" in err.decode()
