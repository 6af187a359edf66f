"""Structured answers (`--schema`, `--schema-multi`) against the fake server: `rlm ask` as a user
runs it, the correction loop, field citations, and the MCP `ask` tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlmcli.errors import UsageError
from rlmcli.schema import AnswerShape, concise, parse_answer
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM
from tests.test_mcp import _session, served  # noqa: F401 - the MCP fixture and client

CONTRACT = str(FIXTURES / "contract.pdf")
SCHEMA = "notice_days int: days of notice to end it for convenience, governing_law"
NOTICE = '\\"one hundred and eighty (180) days\\" [contract.pdf p.7]'
VALID = ("```python\nprint(grep('notice'))\nFINAL({'notice_days': 180, 'governing_law': 'Ireland', "
         f"'_cite': {{'notice_days': '{NOTICE}', 'governing_law': '[contract.pdf p.8]'}}}})\n```")


def _ask(server: FakeLLM, *extra: str) -> Any:
    return run_rlm("ask", CONTRACT, "What notice period ends the contract, and which law governs it?",
                   "--model", "openai/root", "--api-base", server.base, "--no-cache", *extra,
                   env={"RLM_RETRY_BASE": "0.01"})


def _record(result: Any) -> dict[str, Any]:
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_valid_object_first_time_carries_checked_field_citations(server: FakeLLM) -> None:
    server.script("root", [VALID])
    result = _ask(server, "--schema", SCHEMA, "--json")
    record = _record(result)
    assert result.returncode == 0 and record["status"] == "answered"
    assert record["data"] == {"notice_days": 180, "governing_law": "Ireland"} and record["schema_errors"] == []
    assert json.loads(record["answer"]) == record["data"]  # the answer is the object's JSON text
    by_field = {c["field"]: c for c in record["citations"]}
    assert by_field["notice_days"]["status"] == "verified" and by_field["notice_days"]["page"] == 7
    assert by_field["notice_days"]["quote"] == "one hundred and eighty (180) days"
    # cited without a quote: the page exists, nothing on it was checked
    assert by_field["governing_law"]["status"] == "unchecked" and by_field["governing_law"]["page"] == 8
    told = server.requests[0]["messages"][1]["content"]  # the model is told the schema with the question
    schema_line = next(line for line in told.splitlines() if line.startswith("JSON Schema: "))
    sent = json.loads(schema_line.removeprefix("JSON Schema: "))
    assert sent["properties"] == {"notice_days": {"type": "integer", "description": "days of notice to end it for convenience"},
                                  "governing_law": {"type": "string"}}
    assert len(server.requests) == 1


def test_without_json_the_object_goes_to_stdout_and_sources_name_fields(server: FakeLLM) -> None:
    server.script("root", [VALID])
    result = _ask(server, "--schema", SCHEMA)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"notice_days": 180, "governing_law": "Ireland"}
    err = result.stderr.decode().splitlines()
    at = err.index("Sources:")
    assert err[at + 1] == "  notice_days:" and err[at + 2].startswith("    ✓ contract.pdf p.7 l.3:")
    governing = err.index("  governing_law:")
    assert err[governing + 1].startswith("    ○ contract.pdf p.8")


def test_an_invalid_object_is_corrected_after_the_validation_message(server: FakeLLM) -> None:
    server.script("root", [
        "```python\nprint(grep('notice'))\nFINAL({'notice_days': 'one hundred and eighty', 'law': 'Ireland'})\n```",
        VALID,
    ])
    record = _record(_ask(server, "--schema", SCHEMA, "--json"))
    assert record["status"] == "answered" and record["data"]["notice_days"] == 180
    told = server.requests[1]["messages"][-1]["content"]
    assert told.startswith("Your FINAL answer does not match the required JSON Schema:")
    assert "- at $: 'governing_law' is a required property" in told
    assert "- at $.notice_days: 'one hundred and eighty' is not of type 'integer'" in told
    assert record["iterations"] == 2


def test_answers_that_stay_invalid_end_partial_with_what_was_valid_exit_3(server: FakeLLM) -> None:
    bad = "```python\nprint(grep('law'))\nFINAL({'notice_days': 'soon', 'governing_law': 'Ireland'})\n```"
    server.script("root", [bad] * (AnswerShape.attempts + 1))
    result = _ask(server, "--schema", SCHEMA, "--json")
    record = _record(result)
    assert result.returncode == 3
    assert record["status"] == "partial" and record["limit"] == "schema"
    assert record["data"] == {"governing_law": "Ireland"}  # the valid field kept, the invalid one dropped
    assert record["schema_errors"] == ["$.notice_days: 'soon' is not of type 'integer'"]
    assert len(server.requests) == AnswerShape.attempts + 1  # bounded: no call after the last refusal


def test_field_citations_are_checked_like_prose_citations(server: FakeLLM) -> None:
    server.script("root", [
        "```python\nprint(grep('law'))\nFINAL({'notice_days': 180, 'governing_law': 'Ireland', '_cite': {"
        "'notice_days': '\"ninety (90) days\" [contract.pdf p.7]', 'governing_law': '[contract.pdf p.80]'}})\n```"])
    result = _ask(server, "--schema", SCHEMA, "--json")
    by_field = {c["field"]: c for c in _record(result)["citations"]}
    assert by_field["notice_days"]["status"] == "failed" and by_field["notice_days"]["quote"] == "ninety (90) days"
    assert by_field["governing_law"]["status"] == "failed" and "8 pages" in by_field["governing_law"]["note"]


def test_schema_multi_returns_items_each_with_its_citations(server: FakeLLM) -> None:
    server.script("root", [
        "```python\nprint(grep('terminat'))\nFINAL({'items': ["
        "{'clause': '6.1', 'notice_days': 180, '_cite': {'notice_days': '[contract.pdf p.7]'}},"
        "{'clause': '6.2', 'notice_days': 0, '_cite': '[contract.pdf p.7]'}]})\n```"])
    result = _ask(server, "--schema-multi", "clause, notice_days int", "--json")
    record = _record(result)
    assert result.returncode == 0, result.stderr
    assert record["data"] == {"items": [{"clause": "6.1", "notice_days": 180}, {"clause": "6.2", "notice_days": 0}]}
    assert [(c["field"], c["status"]) for c in record["citations"]] == [("items[0].notice_days", "unchecked"),
                                                                       ("items[1]", "unchecked")]
    assert '"type": "array"' in server.requests[0]["messages"][1]["content"]


def test_a_schema_file_with_additional_properties_false_and_a_fenced_json_final(server: FakeLLM, tmp_path: Path) -> None:
    schema = {"type": "object", "additionalProperties": False, "required": ["monthly_fee_eur"],
              "properties": {"monthly_fee_eur": {"type": "number"}}}
    path = tmp_path / "fee.json"
    path.write_text(json.dumps(schema))
    server.script("root", ["```python\nprint(read('contract.pdf', 4))\n```",
                           'FINAL({"monthly_fee_eur": 48500, "_cite": {"monthly_fee_eur": "\\"EUR 48,500\\" [contract.pdf p.4]"}})'])
    record = _record(_ask(server, "--schema", str(path), "--json"))
    assert record["status"] == "answered" and record["data"] == {"monthly_fee_eur": 48500}
    assert record["citations"][0]["status"] == "verified" and record["citations"][0]["field"] == "monthly_fee_eur"


@pytest.mark.parametrize(("spec", "message"), [
    ('{"type": "objet"}', "not a valid JSON Schema"),
    ("{not json", "not valid JSON"),
    ("notice_days integr", "unknown type 'integr'"),
    ("notice days int", "cannot read the field"),
])
def test_a_bad_schema_is_a_usage_error_before_any_call(server: FakeLLM, spec: str, message: str) -> None:
    result = _ask(server, "--schema", spec)
    assert result.returncode == 2 and message in result.stderr.decode(), result.stderr
    assert server.requests == []


def test_the_concise_form() -> None:
    assert concise("name, age int, bio: a short bio") == {
        "type": "object", "required": ["name", "age", "bio"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                       "bio": {"type": "string", "description": "a short bio"}}}
    lines = concise("revenue float: total revenue, in USD millions\nlisted bool")  # newlines: commas stay in descriptions
    assert lines["properties"] == {"revenue": {"type": "number", "description": "total revenue, in USD millions"},
                                   "listed": {"type": "boolean"}}
    with pytest.raises(UsageError, match="named twice"):
        concise("a, a int")
    with pytest.raises(UsageError, match="reserved"):
        concise("_cite")


def test_answers_are_read_from_json_fences_and_python_literals() -> None:
    assert parse_answer('```json\n{"a": 1}\n```') == ({"a": 1}, None)
    assert parse_answer("{'a': True, 'b': None}") == ({"a": True, "b": None}, None)
    assert parse_answer('Here it is: {"a": 1}.') == ({"a": 1}, None)
    value, problem = parse_answer("no object here")
    assert value is None and problem and problem.startswith("it is not JSON")
    value, problem = parse_answer("[" * 100_000)  # hostile nesting: an error, not a crash
    assert value is None and problem


def test_the_mcp_ask_tool_takes_a_schema(served: Path, server: FakeLLM) -> None:  # noqa: F811
    server.script("root", [VALID])

    async def body(c: Any) -> Any:
        bad = await c.call_tool("ask", {"question": "notice?", "schema": "notice_days integr"})
        good = await c.call_tool("ask", {"question": "notice and law?", "schema": SCHEMA})
        return bad, good

    bad, good = _session(served, body, "--model", "openai/root", "--api-base", server.base, "--no-cache")
    assert bad.is_error and "unknown type 'integr'" in bad.content[0].text
    record = good.structured_content
    assert not good.is_error and record["data"] == {"notice_days": 180, "governing_law": "Ireland"}
    assert {c["field"] for c in record["citations"]} == {"notice_days", "governing_law"}
    assert len(server.requests) == 1  # the bad schema cost nothing


def test_a_run_cut_by_a_budget_still_yields_the_valid_object(server: FakeLLM) -> None:
    server.script("root", ["```python\nprint(grep('law'))\n```",
                           '{"notice_days": 180, "governing_law": "Ireland"}'])  # the last call's reply: JSON only
    result = _ask(server, "--schema", SCHEMA, "--json", "--max-iterations", "1")
    record = _record(result)
    assert result.returncode == 3 and record["limit"] == "max-iterations"
    assert record["data"] == {"notice_days": 180, "governing_law": "Ireland"} and record["schema_errors"] == []
    assert "reply now with the JSON answer only" in server.requests[1]["messages"][-1]["content"]
