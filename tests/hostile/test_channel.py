"""Model code that writes its own frames to the pipe the sandbox talks to the parent on. The
parent treats every frame as untrusted: a breach restarts the child, the cell says so, and the
run goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakeserver import FakeLLM
from tests.hostile.conftest import LOOK, ask, cell, outputs

# The child's end of the channel, as model code can find it.
PIPE = "import json, os, struct, sys, time\nwfd = json.loads(sys.argv[1])['wfd']\n"
FINISH = cell("FINAL('still standing [contract.pdf p.1]')")

ATTACKS = {
    "partial frame, then silence": PIPE + "os.write(wfd, struct.pack('>I', 100) + b'{\"type\": \"res')\ntime.sleep(60)",
    "a declared size of 2 GB": PIPE + "os.write(wfd, struct.pack('>I', 2**31 - 1) + b'{')\ntime.sleep(60)",
    "nesting 200,000 deep": PIPE + "body = b'[' * 200000 + b']' * 200000\nos.write(wfd, struct.pack('>I', len(body)) + body)\n"
                            "time.sleep(60)",
    "a mistyped result": PIPE + "body = json.dumps({'type': 'result', 'stdout': 42, 'stderr': [], 'final': {'x': 1}}).encode()\n"
                         "os.write(wfd, struct.pack('>I', len(body)) + body)\ntime.sleep(60)",
    "an unknown request": PIPE + "body = json.dumps({'type': 'request', 'id': 1, 'kind': 'os.system', 'payload': {}}).encode()\n"
                          "os.write(wfd, struct.pack('>I', len(body)) + body)\ntime.sleep(60)",
    "a frame type the parent never sends for": PIPE + "body = json.dumps({'type': 'ready', 'layers': []}).encode()\n"
                                               "os.write(wfd, struct.pack('>I', len(body)) + body)\ntime.sleep(60)",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_forged_frame_is_a_breach_and_the_run_goes_on(server: FakeLLM, attack: str) -> None:
    result, seconds = ask(server, [LOOK, cell(ATTACKS[attack]), FINISH], "--timeout", "40")
    err = outputs(result)
    assert result.returncode == 0, err
    assert result.stdout.decode() == "still standing [contract.pdf p.1]\n"
    assert "SandboxError: sandbox protocol breach" in err and "all variables were lost" in err
    assert seconds < 5 + 8  # a stalled frame is given FRAME_SECONDS (5 s), not --timeout
    # the model was told, in the next request, what happened to its cell
    told = server.calls("gpt-4o-mini")[2]["messages"][-1]["content"]
    assert "sandbox protocol breach" in told


def test_model_code_cannot_pick_an_endpoint_or_a_model(server: FakeLLM) -> None:
    attempts = ("openai/gpt-4o@evil.example.com", "http://evil.example.com/v1/x", "anthropic/claude-3-opus",
                "openai/../../etc")
    code = "\n".join(f"try:\n    llm_query('secret text', model={m!r})\nexcept Exception as e:\n    print('refused:', e)"
                     for m in attempts)
    result, _ = ask(server, [LOOK, cell(code), FINISH])
    err = outputs(result)
    assert result.returncode == 0
    assert err.count("refused: llm_query failed: model") == len(attempts)
    assert {r["model"] for r in server.requests} == {"gpt-4o-mini"}  # nothing else was ever asked


SURROGATE = {
    "in a result's output": "{'type': 'result', 'stdout': '\\ud800', 'stderr': '', 'stdout_total': 1, 'stderr_total': 0, "
                            "'changed': [], 'duration': 0.1, 'final': None, 'error': False, 'looked': True}",
    "in a final answer": "{'type': 'result', 'stdout': '', 'stderr': '', 'stdout_total': 0, 'stderr_total': 0, "
                         "'changed': [], 'duration': 0.1, 'final': 'forged \\udfff answer', 'error': False, 'looked': True}",
    "in a request": "{'type': 'request', 'id': 1, 'kind': 'llm_query', 'payload': {'prompt': '\\ud800x', 'model': None}}",
}


@pytest.mark.parametrize("where", list(SURROGATE))
def test_a_lone_surrogate_is_a_breach_and_the_trace_is_finished(server: FakeLLM, tmp_path: Path, where: str) -> None:
    """Valid JSON, invalid Unicode: `\\ud800` decodes to a lone surrogate that no UTF-8 writer accepts."""
    forge = PIPE + f"body = json.dumps({SURROGATE[where]}).encode()\nos.write(wfd, struct.pack('>I', len(body)) + body)\n" \
                   "time.sleep(60)"
    ws = tmp_path / "ws"
    result, _ = ask(server, [LOOK, cell(forge), FINISH], "-w", str(ws))
    err = outputs(result)
    assert result.returncode == 0, err
    assert result.stdout.decode() == "still standing [contract.pdf p.1]\n"
    assert "SandboxError: sandbox protocol breach" in err and "forged" not in result.stdout.decode()
    trace = next((ws / "runs").glob("*.jsonl")).read_text(encoding="utf-8").splitlines()
    assert "run_finished" in [json.loads(line)["kind"] for line in trace[-2:]]  # (the citations' marks may follow)
