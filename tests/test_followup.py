"""Follow-up questions: `rlm ask -c` and `--cid RUN` against the fake server, and the bounded
context they start with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlmcli.engine import events as ev
from rlmcli.followup import Exchange, context_text
from rlmcli.trace.store import load
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM


def _ask(server: FakeLLM, ws: Path, question: str, *extra: str) -> Any:
    return run_rlm("ask", "-w", str(ws), question, "--model", "openai/root", "--api-base", server.base, "--no-cache",
                   "--json", *extra, env={"RLM_RETRY_BASE": "0.01"})


def _first_message(request: dict[str, Any]) -> str:
    return str(request["messages"][1]["content"])


def test_continue_sends_the_earlier_questions_answers_and_evidence(server: FakeLLM, deal: Path) -> None:
    ws = deal
    server.script("root", [
        "```python\nclauses = grep('terminat')\nprint(len(clauses))\n```",
        "```python\nFINAL('Convenience, cause and insolvency [contract.pdf p.7]')\n```",
    ])
    first = json.loads(_ask(server, ws, "What are the termination clauses?").stdout)
    assert "follows" not in first and "earlier question" not in _first_message(server.requests[0])

    server.script("root", ["```python\nprint(read('contract.pdf', 7)[:80])\nFINAL('180 days for convenience [contract.pdf p.7]')\n```"])
    second = json.loads(_ask(server, ws, "And what notice does each need?", "-c").stdout)
    sent = _first_message(server.requests[2])
    assert sent.startswith("Question: And what notice does each need?")
    assert "Q: What are the termination clauses?" in sent
    assert "A: Convenience, cause and insolvency [contract.pdf p.7]" in sent
    assert "Cited: [contract.pdf p.7]" in sent
    assert "Variables it built (not in this REPL: it starts empty, so rebuild what you need): clauses" in sent
    assert second["follows"] == first["run_id"] and second["status"] == "answered"
    started = [e for e in load(Path(second["trace"])) if isinstance(e, ev.RunStarted)]
    assert started[0].follows == first["run_id"]  # the trace links the runs

    server.script("root", ["```python\nprint(len(grep('law')))\nFINAL('Ireland [contract.pdf p.8]')\n```"])
    third = json.loads(_ask(server, ws, "Which law governs?", "-c").stdout)
    sent = _first_message(server.requests[3])
    assert sent.index("Q: What are the termination clauses?") < sent.index("Q: And what notice does each need?")
    assert third["follows"] == second["run_id"]

    server.script("root", ["```python\nprint(len(grep('fee')))\nFINAL('EUR 48,500 a month [contract.pdf p.4]')\n```"])
    branch = json.loads(_ask(server, ws, "And the fees?", "--cid", first["run_id"][:-2]).stdout)  # a unique prefix
    sent = _first_message(server.requests[4])
    assert "Q: What are the termination clauses?" in sent and "And what notice" not in sent
    assert branch["follows"] == first["run_id"]


def test_continue_without_an_earlier_run_is_a_usage_error(server: FakeLLM, tmp_path: Path) -> None:
    ws = tmp_path / "fresh"
    assert run_rlm("ingest", str(FIXTURES / "contract.pdf"), "-w", str(ws)).returncode == 0
    result = _ask(server, ws, "and then?", "-c")
    assert result.returncode == 2 and b"no earlier run" in result.stderr and server.requests == []
    result = _ask(server, ws, "and then?", "--cid", "20990101")
    assert result.returncode == 1 and b"no run '20990101'" in result.stderr


def test_the_earlier_exchanges_stay_within_their_share_newest_first() -> None:
    exchanges = [Exchange(f"run{i}", f"question {i}?", f"answer {i} " + "x" * 3000, "answered",
                          cited=[f"[contract.pdf p.{i}]"], variables=["v"]) for i in range(1, 9)]
    text = context_text(exchanges, limit=8000)
    assert len(text) <= 8000
    assert "Q: question 8?" in text and "Q: question 1?" not in text  # the newest are kept
    assert "earlier exchange(s) left out to stay within the context budget" in text
    kept = [i for i in range(1, 9) if f"Q: question {i}?" in text]
    assert kept == list(range(kept[0], 9))  # a contiguous run ending with the newest, oldest first
    huge = context_text([Exchange("r", "q?", "y" * 500_000, "answered")], limit=20_000)
    assert len(huge) <= 20_000 and "characters of this answer cut" in huge
