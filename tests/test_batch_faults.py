"""`rlm batch` as cron meets it: overlapping runs on one results file, a disk that fills mid-run,
job lines that are not UTF-8 or name missing files, resumes that must not hide earlier failures,
and a bounded soak against a seeded fault server with a kill -9 in the middle."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmcli.batch.jobs import question_id
from rlmcli.batch.results import ResultsFile
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM
from tests.test_batch import _answering, _batch_cli, _jobs_file, _question, kill_after_rows

MODEL = ["--model", "openai/gpt-4o-mini", "--no-cache"]


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, RLM_RETRY_BASE="0.01", **extra)


def _asked(server: FakeLLM) -> list[str]:
    """The questions the server was asked, one per request that carried one."""
    return [_question(r["messages"][1]["content"]) for r in server.requests if len(r["messages"]) > 1]


def _lines(path: Path) -> list[dict]:
    """Every line of a results file, each of which must be whole JSON (a cut line fails here)."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.split(b"\n") if line]


# ---- one writer per results file ---------------------------------------------------------------

def test_a_second_batch_on_a_busy_results_file_refuses_naming_the_holder(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(delay=0.3))
    jobs, out = _jobs_file(tmp_path, 6), tmp_path / "results.jsonl"
    first = subprocess.Popen([sys.executable, "-m", "rlmcli", "batch", str(jobs), "-o", str(out), "-j", "1",
                              "--api-base", server.base, *MODEL], stderr=subprocess.PIPE, env=_env())
    deadline = time.time() + 120
    while not server.requests and time.time() < deadline:  # the first holds the lock before any job
        time.sleep(0.02)
    second = _batch_cli(server, str(jobs), "-o", str(out))
    err = second.stderr.decode()
    assert second.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"rlm: error: {out}: another rlm batch (pid {first.pid}) is writing these results; not started" in err
    assert first.wait(timeout=180) == 0
    assert sorted(_asked(server)) == sorted(f"question {i}" for i in range(1, 7))  # each job asked once
    assert sorted(r["id"] for r in _lines(out)) == sorted(f"job{i}" for i in range(1, 7))
    assert not Path(f"{out}.lock").exists()  # the holder removes it as it finishes


def test_two_batches_started_together_answer_each_job_once(server: FakeLLM, tmp_path: Path) -> None:
    """Overlapping cron runs: whichever loses the lock refuses (exit 2), or, if it only got there
    after the other had finished, finds every job already in; no job is asked twice either way."""
    server.responder("gpt-4o-mini", _answering(delay=0.2))
    jobs, out = _jobs_file(tmp_path, 8), tmp_path / "results.jsonl"
    cmd = [sys.executable, "-m", "rlmcli", "batch", str(jobs), "-o", str(out), "-j", "2", "--api-base", server.base,
           *MODEL]
    procs = [subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=_env()) for _ in range(2)]
    codes = sorted(p.wait(timeout=180) for p in procs)
    assert codes in ([0, 0], [0, 2])
    assert sorted(_asked(server)) == sorted(f"question {i}" for i in range(1, 9))
    assert sorted(r["id"] for r in _lines(out)) == sorted(f"job{i}" for i in range(1, 9))


def test_the_kernel_releases_the_lock_of_a_killed_batch(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(delay=0.3))
    jobs, out = _jobs_file(tmp_path, 8), tmp_path / "results.jsonl"
    first = kill_after_rows(["-j", "1", "--api-base", server.base, *MODEL], jobs, out, 2, _env())
    assert Path(f"{out}.lock").exists()  # a kill -9 leaves the file, but not the lock on it
    resumed = _batch_cli(server, str(jobs), "-o", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(first)} already in" in resumed.stderr.decode() and not Path(f"{out}.lock").exists()


# ---- whole lines, and what happens when the disk fills -------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KB tmpfs: a real filesystem that fills. Mounting needs root (CAP_SYS_ADMIN)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root; the RLIMIT_FSIZE variant of this test covers the same "
                    "write path without it")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the RLIMIT_FSIZE variant of "
                    "this test covers the same write path")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the disk, then give back `leave` bytes."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def _limit_file_size(limit: int) -> list[str]:
    """A prefix for run_rlm: the batch runs with RLIMIT_FSIZE, so a write past `limit` bytes fails
    in the kernel with EFBIG (Python ignores SIGXFSZ), through the same write path as a full disk."""
    code = (f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            "os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("fault", ["full-tmpfs", "file-size-limit"])
def test_a_results_file_that_stops_taking_lines_loses_nothing(server: FakeLLM, tmp_path: Path, fault: str,
                                                                request: pytest.FixtureRequest) -> None:
    server.responder("gpt-4o-mini", _answering(delay=0.1))
    jobs = _jobs_file(tmp_path, 24)
    prefix: list[str] = []
    if fault == "full-tmpfs":
        disk = request.getfixturevalue("small_disk")
        out = disk / "results.jsonl"
        filler = _fill(disk, 8 << 10)  # room for a handful of ~1.2 KB lines
        reason = "No space left on device"
    else:
        out, limit = tmp_path / "results.jsonl", 1 << 20
        old = json.dumps({"id": "old", "question": "from an earlier batch", "status": "answered", "answer": "x" * 900})
        with open(out, "w") as fh:
            while fh.tell() < limit - (8 << 10):
                fh.write(old + "\n")
        prefix = _limit_file_size(limit)
        reason = "File too large"
    result = run_rlm("batch", str(jobs), "-o", str(out), "-j", "4", "--api-base", server.base, *MODEL,
                     prefix=prefix, env=_env())
    err = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in err, err
    assert f"rlm: error: cannot write to {out} ({reason}): the batch stopped; " in err
    written = {r["id"] for r in _lines(out) if r["id"] != "old"}  # and no cut line
    rescued = [json.loads(line) for line in result.stdout.decode().splitlines()]
    finished = {f"job{q.split()[1]}" for q in _asked(server)}
    assert rescued and written | {r["id"] for r in rescued} == finished and not written & {r["id"] for r in rescued}
    for row in rescued:  # each finished answer not written is named on stderr with its trace, and kept on stdout
        assert row["answer"] == f"answer to: {row['question']}" and Path(row["trace"]).is_file()
        assert f"rlm batch: not written: {row['id']} (answered, trace {row['trace']})" in err
    not_started = int(re.search(r"(\d+) jobs not started", err)[1])  # type: ignore[index]
    assert not_started > 0 and len(finished) + not_started == 24

    # Room again: the user appends the rescued lines; the re-run runs only what never started.
    if fault == "full-tmpfs":
        filler.unlink()
    with open(out, "a") as fh:
        fh.write(result.stdout.decode())
    before = len(server.requests)
    again = _batch_cli(server, str(jobs), "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert len(server.requests) - before == not_started
    rows = [r for r in _lines(out) if r["id"] != "old"]
    assert sorted(r["id"] for r in rows) == sorted(f"job{i}" for i in range(1, 25))  # one line per job


def test_a_cut_last_line_is_removed_on_resume_and_its_job_runs_again(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    jobs, out = _jobs_file(tmp_path, 3), tmp_path / "results.jsonl"
    whole = json.dumps({"id": "job1", "question": "question 1", "status": "answered", "answer": "answer to: question 1"})
    out.write_text(whole + "\n" + '{"id": "job2", "question": "question 2", "status": "answ')
    result = _batch_cli(server, str(jobs), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"rlm batch: removed a cut last line (56 bytes) from {out}" in result.stderr.decode()
    assert sorted(_asked(server)) == ["question 2", "question 3"]
    assert sorted(r["id"] for r in _lines(out)) == ["job1", "job2", "job3"]


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    out.write_text('{"id": "a", "status": "answered"}')
    with ResultsFile(out) as results:
        assert results.repaired == 0
        results.append({"id": "b", "status": "answered"})
    assert [r["id"] for r in _lines(out)] == ["a", "b"]


@pytest.mark.usefixtures("small_disk")
def test_rlm_home_on_a_full_disk_fails_jobs_with_the_disks_reason(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    disk = tmp_path / "disk"
    (disk / "home").mkdir()
    _fill(disk, 0)
    jobs, out = _jobs_file(tmp_path, 3), tmp_path / "results.jsonl"
    result = run_rlm("batch", str(jobs), "-o", str(out), "--api-base", server.base, *MODEL,
                     env=_env(RLM_HOME=str(disk / "home")))
    assert result.returncode == 1 and "Traceback" not in result.stderr.decode()
    rows = _lines(out)
    assert [r["status"] for r in rows] == ["failed"] * 3 and server.requests == []
    assert all("No space left on device" in r["error"] and "no rlm workspace" not in r["error"] for r in rows)


# ---- job lines -------------------------------------------------------------------------------------

def test_a_line_that_is_not_utf8_is_named_and_the_rest_run(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    jobs = tmp_path / "jobs.jsonl"
    notes = str(FIXTURES / "notes.md")
    lines = [json.dumps({"id": "1", "files": [notes], "question": "q1"}).encode(),
             b'{"id": "2", "question": "caf\xe9"}',  # Latin-1, not UTF-8
             json.dumps({"id": "3", "files": [notes], "question": "q3\u2028(a line separator inside a string)"},
                        ensure_ascii=False).encode()]
    jobs.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "results.jsonl"
    result = _batch_cli(server, str(jobs), "-o", str(out))
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err and "UnicodeDecodeError" not in err
    assert f"rlm: error: {jobs}:2: not UTF-8 (byte 0xe9 at column 29); the line was skipped" in err
    assert sorted(r["id"] for r in _lines(out)) == ["1", "3"] and "1 malformed lines" in err
    questions = tmp_path / "q.txt"
    questions.write_bytes(b"first\n\xff\xfe second\nthird\n")
    result = _batch_cli(server, "--questions", str(questions), str(FIXTURES / "notes.md"), "-o", str(tmp_path / "q.jsonl"))
    assert result.returncode == 1 and f"{questions}:2: not UTF-8 (byte 0xff at column 1)" in result.stderr.decode()
    assert sorted(r["id"] for r in _lines(tmp_path / "q.jsonl")) == sorted([question_id("first"), question_id("third")])


def test_missing_files_fail_their_job_by_name_unless_the_line_says_skip(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    pdf, gone = str(FIXTURES / "contract.pdf"), str(tmp_path / "gone.pdf")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(j) for j in [
        {"id": "some-missing", "files": [pdf, "gone.pdf"], "question": "question 1"},
        {"id": "all-missing", "files": ["gone.pdf"], "question": "question 2"},
        {"id": "skip", "files": [pdf, "gone.pdf"], "question": "question 3", "missing": "skip"},
        {"id": "skip-all", "files": ["gone.pdf"], "question": "question 4", "missing": "skip"},
        {"id": "bad", "files": [pdf], "question": "question 5", "missing": "maybe"},
    ]) + "\n")
    out = tmp_path / "results.jsonl"
    result = _batch_cli(server, str(jobs), "-o", str(out))
    err = result.stderr.decode()
    assert result.returncode == 1
    assert f"rlm: error: {jobs}:1: no such file: {gone} (job 'some-missing' fails)" in err
    assert f"rlm: error: {jobs}:2: no such file: {gone} (job 'all-missing' fails)" in err
    assert f"rlm: warning: {jobs}:3: no such file: {gone} (job 'skip' runs without it" in err
    assert f"rlm: error: {jobs}:4: no such file: {gone} (job 'skip-all' fails)" in err
    assert f"rlm: error: {jobs}:5: 'missing' must be 'fail' or 'skip', not 'maybe'" in err
    rows = {r["id"]: r for r in _lines(out)}
    assert {i: r["status"] for i, r in rows.items()} == {"some-missing": "failed", "all-missing": "failed",
                                                         "skip": "answered", "skip-all": "failed"}
    assert rows["some-missing"]["error"] == rows["all-missing"]["error"] == f"no such file: {gone}"
    assert rows["skip"]["files_skipped"] == [{"file": gone, "reason": "no such file"}]
    assert _asked(server) == ["question 3"]  # no job ran over part of its files unasked


def test_an_ingest_failure_keeps_its_reason_and_fails_the_job(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nnot really a pdf\n")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(j) for j in [
        {"id": "mixed", "files": [str(FIXTURES / "contract.pdf"), str(broken)], "question": "question 1"},
        {"id": "only", "files": [str(broken)], "question": "question 2"},
    ]) + "\n")
    out = tmp_path / "results.jsonl"
    result = _batch_cli(server, str(jobs), "-o", str(out))
    assert result.returncode == 1
    rows = {r["id"]: r for r in _lines(out)}
    assert rows["mixed"]["status"] == "failed" and rows["mixed"]["error"].startswith("could not ingest broken.pdf: ")
    assert '"missing": "skip"' in rows["mixed"]["error"]
    assert rows["only"]["status"] == "failed" and "broken.pdf: " in rows["only"]["error"]
    assert "no rlm workspace" not in rows["only"]["error"] and server.requests == []


# ---- a resume does not hide what failed before ---------------------------------------------------

def test_a_resume_exits_1_while_earlier_failures_stand(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(fail_marker="question 2"))
    jobs, out = _jobs_file(tmp_path, 3), tmp_path / "results.jsonl"
    assert _batch_cli(server, str(jobs), "-o", str(out)).returncode == 1
    again = _batch_cli(server, str(jobs), "-o", str(out))
    err = again.stderr.decode()
    assert again.returncode == 1 and "3 already in" in err and "(1 of them failed)" in err
    assert "rlm batch: 1 jobs have failed (1 in earlier runs); run again with --rerun-failed to retry them" in err
    server.responder("gpt-4o-mini", _answering())
    assert _batch_cli(server, str(jobs), "-o", str(out), "--rerun-failed").returncode == 0
    assert _batch_cli(server, str(jobs), "-o", str(out)).returncode == 0


def test_jobs_skipped_for_the_budget_run_on_the_next_run(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    jobs, out = _jobs_file(tmp_path, 4), tmp_path / "results.jsonl"
    assert _batch_cli(server, str(jobs), "-o", str(out), "-j", "1", "--max-cost", "0.000001").returncode == 3
    first = {r["id"]: r["status"] for r in _lines(out)}
    assert "skipped" in first.values()
    again = _batch_cli(server, str(jobs), "-o", str(out))
    done = sum(1 for s in first.values() if s == "answered")
    assert again.returncode == 0 and (f"{4 - done} done, 0 failed, 0 skipped for budget, {done} already in"
                                      in again.stderr.decode())
    assert sorted(set(_asked(server))) == sorted(f"question {i}" for i in range(1, 5))


# ---- soak: tens of jobs, a seeded fault server, a kill -9 and a resume --------------------------

def test_soak_with_seeded_faults_and_a_kill(server: FakeLLM, tmp_path: Path) -> None:
    """~26 % of requests meet a fault (429, 500, 503, reset, slow, cut body, malformed JSON, empty
    reply); the batch is killed once and resumed, then failed jobs rerun: every job ends answered
    exactly once with its own question's answer, and every line of the file is whole."""
    n = 40
    server.responder("gpt-4o-mini", _answering(delay=0.05), whole=True)  # the question, even after a nudge
    server.chaos(rate=0.26, seed=26)
    jobs, out = _jobs_file(tmp_path, n), tmp_path / "results.jsonl"
    flags = ["-j", "6", "--api-base", server.base, *MODEL]
    first = kill_after_rows(flags, jobs, out, 12, _env())
    assert 12 <= len(first) < n
    runs = [_batch_cli(server, str(jobs), "-o", str(out), "-j", "6")]
    while runs[-1].returncode == 1 and len(runs) < 4:
        assert "run again with --rerun-failed" in runs[-1].stderr.decode()
        runs.append(_batch_cli(server, str(jobs), "-o", str(out), "-j", "6", "--rerun-failed"))
    assert runs[-1].returncode == 0, runs[-1].stderr.decode()[-2000:]
    assert all("Traceback" not in r.stderr.decode() for r in runs)
    rows = _lines(out)
    answered = [r for r in rows if r["status"] == "answered"]
    assert sorted(r["id"] for r in answered) == sorted(f"job{i}" for i in range(1, n + 1))  # once each
    assert all(r["answer"] == f"answer to: {r['question']}" and r["question"] == f"question {r['id'][3:]}"
               for r in answered)
    assert all(r["error"] for r in rows if r["status"] == "failed")
    assert sum(server.injected.values()) >= 10 and len(server.injected) >= 4
