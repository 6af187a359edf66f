"""`rlm ask` as a user runs it: a real subprocess pointed at the fake server."""

from __future__ import annotations

import json
import os
import re

from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM


def _ask(server: FakeLLM, *extra: str, input: bytes | None = None, files: tuple[str, ...] | None = None):
    files = files if files is not None else (str(FIXTURES / "contract.pdf"),)
    return run_rlm("ask", *files, "What are the termination clauses?", "--model", "openai/gpt-4o-mini",
                   "--api-base", server.base, "--no-cache", *extra, input=input, env={"RLM_RETRY_BASE": "0.01"})


LOOK = "```python\nprint(len(grep('terminat')))\n```"


def test_answer_on_stdout_trace_on_stderr_exit_0(server: FakeLLM) -> None:
    server.script("gpt-4o-mini", ["```python\nprint(grep('insolvent'))\n```", "```python\nFINAL('Insolvency ends it [contract.pdf p.7]')\n```"])
    result = _ask(server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "Insolvency ends it [contract.pdf p.7]\n"
    err = result.stderr.decode().splitlines()
    assert err[:3] == ["Sources:", "  ○ contract.pdf p.7: cited, not checked", "  (○ cited, not checked (no quotation))"]
    assert err[3].startswith("rlm: answered in 2 iterations, 2 calls,") and len(err) == 4  # no animation in a pipe
    assert all("\x1b" not in line for line in err)


def test_verbose_in_a_pipe_prints_plain_timestamped_lines(server: FakeLLM) -> None:
    server.script("gpt-4o-mini", ["```python\nprint(grep('insolvent'))\n```", "```python\nFINAL('done')\n```"])
    err = _ask(server, "-v").stderr.decode()
    lines = err.splitlines()
    assert re.match(r"\d\d:\d\d:\d\d run: openai/gpt-4o-mini over ", lines[0])
    assert "iteration 1" in lines[1] and lines[2].endswith("code:") and lines[3] == "print(grep('insolvent'))"
    assert "contract.pdf p.7 l.9: insolvent, enters liquidation" in err
    assert "answered after 2 iterations" in err and "\x1b" not in err


def test_quiet_prints_only_the_answer(server: FakeLLM) -> None:
    server.script("gpt-4o-mini", [LOOK, "```python\nFINAL('42')\n```"])
    result = _ask(server, "-q")
    assert result.stdout == b"42\n" and result.stderr == b""


def test_partial_answer_exits_3(server: FakeLLM) -> None:
    server.script("gpt-4o-mini", ["```python\nprint(1)\n```", "best effort [contract.pdf p.7]"])
    result = _ask(server, "--max-iterations", "1")
    assert result.returncode == 3
    assert result.stdout == b"best effort [contract.pdf p.7]\n"
    assert b"rlm: partial answer: the max-iterations budget was reached" in result.stderr


def test_no_model_is_a_usage_error_that_names_the_way_out(server: FakeLLM) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RLM_MODEL"}
    result = run_rlm("ask", str(FIXTURES / "contract.pdf"), "q", env=env)
    assert result.returncode == 2
    assert b"no model is set: pass --model" in result.stderr and b"--offline" in result.stderr


def test_stdin_is_read_only_with_dash(server: FakeLLM) -> None:
    server.script("gpt-4o-mini", ["```python\nFINAL(read('stdin', 1).splitlines()[1])\n```"])  # read: it looked
    result = _ask(server, input=b"piped notes: clause 9 allows termination\n", files=("-",))
    assert result.stdout == b"piped notes: clause 9 allows termination\n", result.stderr


def test_dry_run_prints_a_worst_case_estimate(server: FakeLLM) -> None:
    result = _ask(server, "--dry-run", "--max-calls", "10", "--max-iterations", "5", "--json")
    estimate = json.loads(result.stdout)
    assert estimate["schema"] == "rlm.estimate/1"
    root, sub = estimate["models"]
    assert (root["role"], root["calls"], sub["calls"]) == ("root", 6, 4)
    assert root["context_window"] == 128000 and estimate["worst_case_cost"] > 0
    assert server.requests == []


def test_offline_prints_passages_not_an_answer() -> None:
    result = run_rlm("ask", str(FIXTURES / "contract.pdf"), "what if a party becomes insolvent", "--offline")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("[contract.pdf p.7 l.")
    assert b"offline: no model was used" in result.stderr


def test_empty_replies_exit_4_within_seconds(server: FakeLLM) -> None:
    import time

    server.responder("gpt-4o-mini", lambda prompt: "")
    started = time.monotonic()
    result = _ask(server)
    assert result.returncode == 4 and time.monotonic() - started < 10
    assert result.stderr.decode().strip().endswith("rlm: error: the model returned 3 empty replies in a row")
