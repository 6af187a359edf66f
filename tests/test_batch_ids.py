"""Batch ids that survive edits: a question's id is a hash of its text unless its job line names
one, and a rerun asks again any id whose recorded question is not the one it now holds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rlmcli.batch.jobs import parse_jobs, question_id
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM, Reply

CONTRACT = str(FIXTURES / "contract.pdf")


def _question(prompt: str) -> str:
    return prompt.split("Question: ", 1)[1].split("\n", 1)[0] if "Question: " in prompt else ""


def _answering(prompt: str) -> Reply:
    return Reply(f"```python\nn = len(grep('fee'))\nFINAL('answer to: ' + {_question(prompt)!r})\n```")


def _batch(server: FakeLLM, *args: str) -> object:
    return run_rlm("batch", *args, "--model", "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache")


def _latest(out: Path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}


def _asked(server: FakeLLM, since: int) -> Counter[str]:
    return Counter(_question(r["messages"][1]["content"]) for r in server.requests[since:] if len(r["messages"]) > 1)


def test_inserting_a_question_asks_it_and_nothing_else(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering)
    questions, out = tmp_path / "q.txt", tmp_path / "out.jsonl"
    first = ["What is the fee?", "Who are the parties?", "When does it end?", "Which law applies?"]
    questions.write_text("\n".join(first) + "\n")
    assert _batch(server, "--questions", str(questions), CONTRACT, "-o", str(out)).returncode == 0
    before = len(server.requests)
    questions.write_text("\n".join([first[0], "Is there a penalty?", *first[1:]]) + "\n")  # a new line 2
    again = _batch(server, "--questions", str(questions), CONTRACT, "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert _asked(server, before) == {"Is there a penalty?": 1}
    latest = _latest(out)
    assert {row["question"] for row in latest.values()} == {*first, "Is there a penalty?"}
    assert all(row["answer"] == f"answer to: {row['question']}" and row_id == question_id(row["question"])
               for row_id, row in latest.items())


def test_a_question_changed_under_its_id_is_asked_again(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("gpt-4o-mini", _answering)
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"

    def write(q2: str) -> None:
        jobs.write_text("".join(json.dumps({"id": i, "files": [CONTRACT], "question": q}) + "\n"
                                for i, q in (("a", "What is the fee?"), ("b", q2))))

    write("Who are the parties?")
    assert _batch(server, str(jobs), "-o", str(out)).returncode == 0
    before = len(server.requests)
    write("Who signed it?")
    assert _batch(server, str(jobs), "-o", str(out)).returncode == 0
    assert _asked(server, before) == {"Who signed it?": 1}
    assert _latest(out)["b"]["answer"] == "answer to: Who signed it?"


def test_job_lines_without_an_id_keep_theirs_when_lines_move(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    lines = [json.dumps({"files": ["a.pdf"], "question": q}) for q in ("fee?", "parties?")]
    jobs.write_text("\n".join(lines) + "\n")
    ids = {j.question: j.id for j in parse_jobs(jobs)[0]}
    jobs.write_text("\n".join([json.dumps({"files": ["a.pdf"], "question": "new?"}), *reversed(lines)]) + "\n")
    moved = {j.question: j.id for j in parse_jobs(jobs)[0]}
    assert {q: moved[q] for q in ids} == ids and len(set(moved.values())) == 3
    other_files = tmp_path / "other.jsonl"  # the same question over other documents is another job
    other_files.write_text(json.dumps({"files": ["b.pdf"], "question": "fee?"}) + "\n")
    assert parse_jobs(other_files)[0][0].id != ids["fee?"]
