"""`rlm chat` against the fake server: driven through a pseudo-terminal (pexpect) as a person types,
and from a pipe. Variables persist between questions; Ctrl-C stops a question, not the session."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import pexpect

from rlmcli.engine import events as ev
from rlmcli.trace.store import load
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM, Reply


def _wait_for_requests(server: FakeLLM, n: int) -> None:
    deadline = time.monotonic() + 60
    while len(server.requests) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.requests) >= n


def _runs(ws: Path) -> dict[str, ev.RunStarted]:
    out = {}
    for path in (ws / "runs").glob("*.jsonl"):
        started = [e for e in load(path) if isinstance(e, ev.RunStarted) and e.depth == 0]
        out[path.stem] = started[0]
    return out


def test_chat_in_a_terminal_shares_variables_and_survives_ctrl_c(server: FakeLLM, deal: Path) -> None:
    ws = deal
    server.script("root", [
        # question 1 builds a variable
        "```python\nhits = grep('terminat')\nnotice = 180\nprint(len(hits))\n```",
        "```python\nFINAL(f'{notice} days [contract.pdf p.7]')\n```",
        # question 2: Ctrl-C while its cell runs (it set a variable, then told the sub-model it started)
        "```python\nstarted = 1\nllm_query('started')\nimport time\nwhile True:\n    time.sleep(0.05)\n```",
        # question 3: Ctrl-C while waiting for the model
        Reply("```python\nFINAL('too late')\n```", delay=60),
        # question 4 reads what questions 1 and 2 left in the REPL
        "```python\nprint(len(grep('law')))\nFINAL(f'{notice + 1} {started}')\n```",
    ])
    server.responder("sub", lambda prompt: "noted")
    env = dict(os.environ, NO_COLOR="1", RLM_RETRY_BASE="0.01")
    child = pexpect.spawn(sys.executable, ["-m", "rlmcli", "chat", "-w", str(ws), "--model", "openai/root",
                                           "--sub-model", "openai/sub", "--api-base", server.base, "--no-cache"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 120))
    transcript = io.StringIO()
    child.logfile_read = transcript
    try:
        child.expect("Ctrl-C stops a question")
        child.expect_exact("rlm> ")
        child.sendline("What notice ends the contract?")
        child.expect_exact("180 days [contract.pdf p.7]")
        child.expect_exact("rlm> ")

        child.sendline("Wait for ever")
        _wait_for_requests(server, 4)  # the cell's llm_query arrived: it set `started` and loops now
        time.sleep(0.3)
        child.sendintr()
        child.expect_exact("rlm: interrupted; the partial answer above and the trace were saved")
        child.expect_exact("rlm> ")

        child.sendline("Ask the slow model")
        _wait_for_requests(server, 5)
        child.sendintr()
        child.expect_exact("rlm: interrupted; the partial answer above and the trace were saved")
        child.expect_exact("rlm> ")

        child.sendintr()  # at the prompt: a fresh line, not the end
        child.expect_exact("(Ctrl-D leaves)")
        child.sendline("One more?")
        child.expect_exact("181 1")  # notice from question 1, started from the interrupted question 2
        child.expect_exact("rlm> ")
        child.sendline("!vars")
        child.expect_exact("notice: int")
        child.expect_exact("rlm> ")
        child.sendline("!cost")
        child.expect("4 question\\(s\\), 5 model calls")  # the interrupted request never completed
        child.expect_exact("rlm> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, transcript.getvalue()[-3000:]
    assert "variables built so far are gone" not in transcript.getvalue()  # both interrupts kept the REPL

    asked = [r["messages"][1]["content"] for r in server.calls("root")]
    assert "earlier question" not in asked[0]
    last = asked[-1]  # the 4th question's first request: every earlier question, in order
    assert last.index("Q: What notice ends the contract?") < last.index("Q: Wait for ever") < last.index("Q: Ask the slow model")
    assert "Variables it built (still defined in the REPL): hits, notice" in last
    runs = _runs(ws)
    assert len(runs) == 4  # each question saved as a run
    chain = sorted(runs.values(), key=lambda e: e.time)
    assert chain[0].follows is None and [e.follows for e in chain[1:]] == [e.run_id for e in chain[:-1]]


def test_chat_from_a_pipe_answers_each_line(server: FakeLLM, deal: Path) -> None:
    ws = deal
    server.script("root", [
        "```python\nfee = read('contract.pdf', 4).split('EUR ')[1].split(' ')[0]\nFINAL(fee)\n```",
        "```python\nprint(len(grep('fee')))\nFINAL('twice: ' + fee)\n```",
    ])
    result = run_rlm("chat", "-w", str(ws), "--model", "openai/root", "--api-base", server.base, "--no-cache",
                     input=b"What is the monthly fee?\n\n!runs\nAnd twice?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == ["48,500", "twice: 48,500"]
    assert "rlm> " not in result.stdout.decode() + result.stderr.decode()  # no prompt off a terminal
    runs = _runs(ws)
    assert len(runs) == 2 and sorted(e.follows is None for e in runs.values()) == [False, True]
    assert [line.split("\t")[1] for line in result.stderr.decode().splitlines() if "\tanswered\t" in line] == ["answered"]


def test_chat_takes_files_whose_names_have_spaces_and_names_one_that_is_missing(server: FakeLLM, tmp_path: Path) -> None:
    spaced = tmp_path / "My Contract.pdf"
    spaced.write_bytes((FIXTURES / "contract.pdf").read_bytes())
    server.script("root", ["```python\nFINAL(str(len(grep('fee')) > 0))\n```"])
    base = ["--model", "openai/root", "--api-base", server.base, "--no-cache"]
    result = run_rlm("chat", str(spaced), *base, input=b"Is there a fee?\n")
    assert result.returncode == 0 and result.stdout.decode().splitlines() == ["True"], result.stderr
    missing = run_rlm("chat", str(tmp_path / "My Contrat.pdf"), *base, input=b"q\n")
    assert missing.returncode == 2 and b"no such file" in missing.stderr and b"My Contract.pdf" in missing.stderr
