"""Batch jobs against the fake server: faults, kill and resume, the cost cap, malformed lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rlmcli.batch.driver import Batch, BatchReport
from rlmcli.batch.jobs import Job, parse_jobs, question_id
from rlmcli.batch.results import ResultsFile
from tests.conftest import FIXTURES, make_settings, run_rlm
from tests.fakeserver import FakeLLM, Reply

FINISH = "```python\nn = len(grep('fee'))\nFINAL('answer to: ' + {q!r})\n```"


def _question(prompt: str) -> str:
    return prompt.split("Question: ", 1)[1].split("\n", 1)[0] if "Question: " in prompt else ""


def _answering(delay: float = 0.0, fail_marker: str = "FAIL") -> object:
    def respond(prompt: str) -> Reply:
        q = _question(prompt)
        if fail_marker in q:
            return Reply(status=500)
        return Reply(FINISH.format(q=q), delay=delay)
    return respond


def _jobs_file(tmp_path: Path, n: int, bad_every: int = 0) -> Path:
    path = tmp_path / "jobs.jsonl"
    lines = []
    for i in range(1, n + 1):
        q = f"question {i}" + (" FAIL" if bad_every and i % bad_every == 0 else "")
        lines.append(json.dumps({"id": f"job{i}", "files": [str(FIXTURES / "contract.pdf")], "question": q}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _batch_cli(server: FakeLLM, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_rlm("batch", *args, "--model", "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache",
                   env={"RLM_RETRY_BASE": "0.01"})


def _results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kill_after_rows(flags: list[str], jobs: Path, out: Path, rows: int, env: dict[str, str]) -> set[str]:
    """Start `rlm batch`, SIGKILL it once `rows` results are in, return the ids it finished."""
    proc = subprocess.Popen([sys.executable, "-m", "rlmcli", "batch", str(jobs), "-o", str(out), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 180
    while (not out.exists() or len(out.read_text().splitlines()) < rows) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {r["id"] for r in _results(out)}


def test_twenty_jobs_with_faults_in_some(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(fail_marker="FAIL"))
    out = tmp_path / "results.jsonl"
    result = _batch_cli(server, str(_jobs_file(tmp_path, 20, bad_every=5)), "-o", str(out), "-j", "4")
    assert result.returncode == 1  # some failed
    rows = _results(out)
    assert sorted(r["id"] for r in rows) == sorted(f"job{i}" for i in range(1, 21))
    failed = {r["id"] for r in rows if r["status"] == "failed"}
    assert failed == {"job5", "job10", "job15", "job20"}
    ok = [r for r in rows if r["status"] == "answered"]
    assert all(r["answer"] == f"answer to: {r['question']}" for r in ok) and ok[0]["schema"] == "rlm.answer/1"
    assert all("fake error 500" in r["error"] for r in rows if r["status"] == "failed")
    assert "rlm batch: 16 done, 4 failed, 0 skipped for budget" in result.stderr.decode()


def test_killed_batch_resumes_without_asking_finished_jobs_again(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(delay=0.3))
    jobs, out = _jobs_file(tmp_path, 20), tmp_path / "results.jsonl"
    env = dict(os.environ, RLM_RETRY_BASE="0.01")
    first = kill_after_rows(["-j", "2", "--model", "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache"],
                            jobs, out, 6, env)
    assert 6 <= len(first) < 20
    asked_before = len(server.requests)
    resumed = _batch_cli(server, str(jobs), "-o", str(out), "-j", "4")
    assert resumed.returncode == 0, resumed.stderr
    rows = _results(out)
    assert sorted(r["id"] for r in rows) == sorted(f"job{i}" for i in range(1, 21))  # none lost, none twice
    # The killed batch may have left a connection with headers but no body, which the server
    # records late and empty: only requests with messages carry a question.
    asked_again = {_question(r["messages"][1]["content"]) for r in server.requests[asked_before:] if r["messages"]}
    assert not asked_again & {f"question {i[3:]}" for i in first}
    assert f"{len(first)} already in" in resumed.stderr.decode()


def test_rerun_failed_retries_only_the_failed(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(fail_marker="3"))
    jobs, out = _jobs_file(tmp_path, 4), tmp_path / "results.jsonl"
    assert _batch_cli(server, str(jobs), "-o", str(out)).returncode == 1
    server.responder("gpt-4o-mini", _answering(fail_marker="never"))
    before = len(server.requests)
    again = _batch_cli(server, str(jobs), "-o", str(out), "--rerun-failed")
    assert again.returncode == 0
    assert [_question(r["messages"][1]["content"]) for r in server.requests[before:]] == ["question 3"]
    latest = {r["id"]: r["status"] for r in _results(out)}
    assert latest == {"job1": "answered", "job2": "answered", "job3": "answered", "job4": "answered"}


def test_batch_cost_cap_stops_starting_jobs(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    jobs, out = _jobs_file(tmp_path, 5), tmp_path / "results.jsonl"
    result = _batch_cli(server, str(jobs), "-o", str(out), "-j", "1", "--max-cost", "0.000001")
    assert result.returncode == 3
    statuses = [r["status"] for r in _results(out)]
    assert statuses == ["skipped"] * 5 and server.requests == []  # not even the first request fits in $0.000001
    err = result.stderr.decode()
    assert "0 done, 0 failed, 5 skipped for budget" in err and "the batch budget (--max-cost 1e-06) was reached" in err


def test_malformed_lines_are_named_and_the_rest_runs(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    jobs = tmp_path / "jobs.jsonl"
    good = json.dumps({"id": "ok", "files": [str(FIXTURES / "notes.md")], "question": "q"})
    jobs.write_text("\n".join([good, "{not json", json.dumps({"id": "x", "question": ""}),
                               json.dumps({"id": "y", "question": "q"}), json.dumps({"id": "ok", "question": "q", "files": ["a"]}),
                               json.dumps({"id": "z", "question": "q", "files": ["a"], "colour": "red"}),
                               json.dumps({"id": "w", "question": "q", "files": ["a"], "max_iterations": 0}),
                               json.dumps({"id": "v", "question": "q", "files": ["a"], "timeout": "soon"})]) + "\n")
    out = tmp_path / "results.jsonl"
    result = _batch_cli(server, str(jobs), "-o", str(out))
    err = result.stderr.decode()
    assert result.returncode == 1
    assert f"{jobs}:2: " in err and f"{jobs}:3: 'question' must be a non-empty string" in err
    assert f"{jobs}:4: a job needs 'files' or 'workspace'" in err and f"{jobs}:5: duplicate id 'ok'" in err
    assert f"{jobs}:6: unknown keys colour" in err
    assert f"{jobs}:7: 'max_iterations' must be at least 1, not 0" in err
    assert f"{jobs}:8: 'timeout' must be a number, not 'soon'" in err
    assert [r["id"] for r in _results(out)] == ["ok"]


def test_shared_documents_are_ingested_once_and_requests_share_one_bound(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering(delay=0.2))
    files = [str(FIXTURES / "contract.pdf"), str(FIXTURES / "contract.docx")]
    jobs = [Job(f"j{i}", f"question {i}", list(reversed(files)) if i % 2 else list(files)) for i in range(8)]
    runner = Batch(make_settings(model="openai/gpt-4o-mini", api_base=server.base, concurrency=3), jobs_at_once=8)
    report = runner.run(jobs, ResultsFile(tmp_path / "r.jsonl"), BatchReport())
    assert report.done == 8
    assert len(runner.workspaces) == 1  # one ingest for eight jobs naming the same files
    assert len({r["workspace"] for r in _results(tmp_path / "r.jsonl")}) == 1
    assert server.max_in_flight <= 3


def test_questions_file_mode(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    qs = tmp_path / "q.txt"
    qs.write_text("What is the fee?\n\n# a comment\nWho are the parties?\n")
    out = tmp_path / "results.jsonl"
    result = _batch_cli(server, "--questions", str(qs), str(FIXTURES / "contract.pdf"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted((r["id"], r["answer"]) for r in _results(out)) == sorted([
        (question_id("What is the fee?"), "answer to: What is the fee?"),
        (question_id("Who are the parties?"), "answer to: Who are the parties?")])  # ids are hashes of the text


def test_parse_jobs_resolves_relative_files_against_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/x.pdf").write_bytes(b"%PDF-1.4\n")
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text(json.dumps({"id": "a", "files": ["docs/x.pdf", "docs/gone.pdf"], "question": "q",
                                     "max_cost": 0.1, "model": "m"}) + "\n")
    jobs, errors = parse_jobs(jobs_file)
    assert not errors and jobs[0].files == [str(tmp_path / "docs/x.pdf")]
    assert jobs[0].missing == [str(tmp_path / "docs/gone.pdf")] and jobs[0].line == 1
    assert jobs[0].overrides == {"model": "m", "max_cost": 0.1}


def test_an_unwritable_results_file_stops_the_batch_before_any_job(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    qs = tmp_path / "q.txt"
    qs.write_text("one\ntwo\n")
    result = _batch_cli(server, "--questions", str(qs), str(FIXTURES / "notes.md"), "-o", str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path}: cannot write results there (Is a directory)" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode() and server.calls("gpt-4o-mini") == []


def test_an_empty_jobs_file_says_so_and_succeeds(server: FakeLLM, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("")
    result = _batch_cli(server, str(jobs), "-o", str(tmp_path / "r.jsonl"))
    assert result.returncode == 0 and f"rlm batch: no jobs in {jobs}" in result.stderr.decode()


def test_bad_settings_stop_the_batch_before_any_job(server: FakeLLM, tmp_path: Path) -> None:
    jobs, out = _jobs_file(tmp_path, 3), tmp_path / "results.jsonl"
    result = _batch_cli(server, str(jobs), "-o", str(out), "--sandbox", "bogus")
    assert result.returncode == 2 and "--sandbox must be auto, strict or basic, not 'bogus'" in result.stderr.decode()
    assert not out.exists() and server.requests == []
    result = run_rlm("batch", str(jobs), "-o", str(out), "--model", "openai/gpt-4o-mini", "--api-base", server.base,
                     env={"RLM_MAX_DEPTH": "-1"})
    assert result.returncode == 2 and "max_depth from the environment (RLM_MAX_DEPTH) must be at least 0, not -1" in result.stderr.decode()


def test_a_job_line_with_a_bad_model_fails_alone(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering())
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([
        json.dumps({"id": "good", "files": [str(FIXTURES / "notes.md")], "question": "q"}),
        json.dumps({"id": "bad", "files": [str(FIXTURES / "notes.md")], "question": "q", "model": "http://evil/x"}),
    ]) + "\n")
    result = _batch_cli(server, str(jobs), "-o", str(tmp_path / "r.jsonl"))
    assert result.returncode == 1
    assert f"{jobs}:2: 'model' is not a model name" in result.stderr.decode()
    assert [r["id"] for r in _results(tmp_path / "r.jsonl")] == ["good"]
