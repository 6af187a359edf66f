"""`rlm batch --schema ... --format csv` against the fake server: one object per job in the results
file, every row of it (resumed ones too) as CSV on stdout, with resume and exit statuses as before."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from pdfgen import make_pdf

from rlmcli.batch.jobs import decode_lines, question_id, question_jobs_from
from rlmcli.batch.table import csv_text
from tests.conftest import run_rlm
from tests.fakeserver import FakeLLM, Reply

CONTRACTS = {"alpha.pdf": (90, "Ireland"), "beta.pdf": (30, "England and Wales"), "gamma.pdf": (60, "Delaware")}
QUESTION = "What notice ends the contract, and which law governs it?"
SCHEMA = "notice_days int, governing_law"


def _contracts(tmp_path: Path) -> list[str]:
    out = []
    for name, (days, law) in CONTRACTS.items():
        path = tmp_path / name
        make_pdf(path, [["Services Agreement", f"Either party may terminate on {days} days' written notice."],
                        ["Governing Law", f"This Agreement is governed by the laws of {law}."]])
        out.append(str(path))
    return out


def _model(failing: set[str]) -> Any:
    """Reads which contract the job is over from the workspace description; answers from its pages."""
    def respond(prompt: str) -> str | Reply:
        doc = re.search(r"^- (\w+\.pdf) \(", prompt, re.M)
        if doc is None:
            return Reply(status=500)
        if doc.group(1) in failing:
            return Reply(status=500)
        days, law = CONTRACTS[doc.group(1)]
        name = doc.group(1)
        return ("```python\nprint(grep('notice'))\n"
                f"FINAL({{'notice_days': {days}, 'governing_law': {law!r}, '_cite': "
                f"{{'notice_days': '[{name} p.1]', 'governing_law': '\"laws of {law}\" [{name} p.2]'}}}})\n```")
    return respond


def _batch(server: FakeLLM, files: list[str], out: Path, *extra: str) -> Any:
    return run_rlm("batch", "--questions", "-", *files, "--each", "--schema", SCHEMA, "-o", str(out), "--format", "csv",
                   "--model", "openai/root", "--api-base", server.base, "--no-cache", *extra,
                   input=f"{QUESTION}\n".encode(), env={"RLM_RETRY_BASE": "0.01"})


def _table(stdout: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(stdout.decode())))


def test_a_batch_to_csv_with_resume(server: FakeLLM, tmp_path: Path) -> None:
    files = _contracts(tmp_path)
    out = tmp_path / "review.jsonl"
    server.responder("root", _model(failing={"beta.pdf"}))
    first = _batch(server, files, out)
    assert first.returncode == 1, first.stderr  # a job failed: exit 1, as without --format
    rows = _table(first.stdout)
    assert list(rows[0]) == ["id", "document", "status", "notice_days", "governing_law", "citations", "error"]
    assert [(r["id"], r["status"]) for r in rows] == [("alpha.pdf", "answered"), ("beta.pdf", "failed"),
                                                     ("gamma.pdf", "answered")]
    assert rows[0]["notice_days"] == "90" and rows[0]["governing_law"] == "Ireland" and rows[0]["document"] == "alpha.pdf"
    assert rows[0]["citations"] == "notice_days: [alpha.pdf p.1] ○; governing_law: [alpha.pdf p.2] ✓"  # ○: no quote
    assert rows[1]["notice_days"] == "" and rows[1]["error"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["id"]: line.get("data") for line in lines}["gamma.pdf"] == {"notice_days": 60, "governing_law": "Delaware"}

    server.responder("root", _model(failing=set()))
    before = len(server.requests)
    second = _batch(server, files, out, "--rerun-failed")
    assert second.returncode == 0, second.stderr
    assert b"1 done, 0 failed, 0 skipped for budget, 2 already in" in second.stderr
    asked = {re.search(r"^- (\w+\.pdf) \(", r["messages"][1]["content"], re.M).group(1)  # type: ignore[union-attr]
             for r in server.requests[before:]}
    assert asked == {"beta.pdf"}  # only the failed job ran again
    rows = _table(second.stdout)  # ...and the table holds every row, the resumed ones included
    assert [(r["id"], r["status"], r["notice_days"], r["governing_law"]) for r in rows] == [
        ("alpha.pdf", "answered", "90", "Ireland"), ("beta.pdf", "answered", "30", "England and Wales"),
        ("gamma.pdf", "answered", "60", "Delaware")]

    third = _batch(server, files, out)  # nothing to do: the table still prints
    assert third.returncode == 0 and len(_table(third.stdout)) == 3 and len(server.requests) == before + 1


def test_each_makes_one_job_per_file_and_question() -> None:
    one = question_jobs_from(decode_lines(b"# a comment\nnotice?\n"), ["a/x.pdf", "b/y.pdf"], each=True)[0]
    assert [(j.id, j.question, j.files) for j in one] == [("x.pdf", "notice?", ["a/x.pdf"]), ("y.pdf", "notice?", ["b/y.pdf"])]
    two = question_jobs_from(decode_lines(b"notice?\nlaw?\n"), ["a/x.pdf", "b/x.pdf"], each=True)[0]
    assert [j.id.split(":")[0] for j in two] == ["a/x.pdf", "a/x.pdf", "b/x.pdf", "b/x.pdf"]  # same names: paths
    assert all(j.id.split(":")[1].startswith("q-") for j in two) and len({j.id for j in two}) == 4
    together = question_jobs_from(decode_lines(b"notice?\n\nlaw?\n"), ["a/x.pdf", "b/y.pdf"], each=False)[0]
    assert [(j.id, j.files) for j in together] == [(question_id("notice?"), ["a/x.pdf", "b/y.pdf"]),
                                                   (question_id("law?"), ["a/x.pdf", "b/y.pdf"])]


def test_schema_multi_rows_are_one_per_item() -> None:
    rows = [{"id": "f1", "status": "answered", "workspace": "/ws/auto1",
             "data": {"items": [{"segment": "Cloud", "revenue": 12.5}, {"segment": "Devices", "revenue": 3}]},
             "citations": [{"field": "items[1].revenue", "text": "[f1.pdf p.4]", "status": "verified"}]},
            {"id": "f2", "status": "failed", "error": "HTTP 500"}]
    table = list(csv.reader(io.StringIO(csv_text(rows, ["segment", "revenue"], True, {"f1": "f1.pdf"}))))
    assert table == [["id", "document", "status", "item", "segment", "revenue", "citations", "error"],
                     ["f1", "f1.pdf", "answered", "1", "Cloud", "12.5", "", ""],
                     ["f1", "f1.pdf", "answered", "2", "Devices", "3", "revenue: [f1.pdf p.4] ✓", ""],
                     ["f2", "", "failed", "", "", "", "", "HTTP 500"]]


def test_without_a_schema_the_csv_has_the_answer(server: FakeLLM, tmp_path: Path) -> None:
    files = _contracts(tmp_path)[:1]
    server.script("root", ["```python\nprint(grep('law'))\nFINAL('Ireland [alpha.pdf p.2]')\n```"])
    out = tmp_path / "r.jsonl"
    result = run_rlm("batch", "--questions", "-", *files, "-o", str(out), "--format", "csv", "--model", "openai/root",
                     "--api-base", server.base, "--no-cache", input=b"Which law?\n")
    assert result.returncode == 0, result.stderr
    assert _table(result.stdout) == [{"id": question_id("Which law?"), "document": "alpha.pdf", "status": "answered",
                                      "answer": "Ireland [alpha.pdf p.2]", "citations": "[alpha.pdf p.2] ○", "error": ""}]
