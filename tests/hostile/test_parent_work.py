"""Requests that make the parent do unbounded work: every request is bounded before the parent
works for it, a text never becomes a PDF in the parent, and a reply the child never reads has a
deadline."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import FIXTURES
from tests.fakeserver import FakeLLM
from tests.hostile.conftest import LOOK, ask, cell, outputs

FINISH = cell("FINAL('still standing [contract.pdf p.1]')")


def test_rlm_query_over_ten_thousand_documents_is_refused_before_joining(server: FakeLLM) -> None:
    server.responder("sub", lambda prompt: "sub answer")
    result, _ = ask(server, [LOOK, cell("print(rlm_query('q', ['contract.pdf'] * 10000))"),
                             cell("print(rlm_query('q', ['contract.pdf', 'contract.pdf']))"), FINISH],
                    "--sub-model", "openai/sub")
    err = outputs(result)
    assert result.returncode == 0, err
    assert "rlm_query takes at most" in err and "10,000" in err, err
    assert "characters; the limit is" not in err  # nothing was joined to find that out
    assert len(server.calls("sub")) == 1  # the small request went through, the big one never did


def test_rlm_query_over_many_large_documents_is_refused_from_their_sizes(server: FakeLLM, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text(("A line of the long appendix, repeated to make a big document. " * 16 + "\n") * 6000)  # ~6 MB
    ws = tmp_path / "ws"
    from rlmcli.workspace.ingest import ingest

    ingest([str(FIXTURES / "contract.pdf"), str(big)], ws)
    result, _ = ask(server, [LOOK, cell("print(rlm_query('q', ['big.txt']))"), FINISH], "--sub-model", "openai/sub",
                    ws=ws)
    err = outputs(result)
    assert result.returncode == 0, err
    assert "rlm_query: those documents hold" in err, err
    assert server.calls("sub") == []


PDF_TEXT = ("%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >>"
            " endobj\n3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj\ntrailer << /Root 1 0 R >>\n"
            "%%EOF\n")


def test_rlm_query_over_a_pdf_looking_text_reads_it_as_text(server: FakeLLM) -> None:
    server.responder("sub", lambda prompt: "```python\nFINAL('sub done')\n```")
    result, _ = ask(server, [LOOK, cell(f"print(rlm_query('what is this?', {PDF_TEXT!r}))"), FINISH],
                    "--sub-model", "openai/sub", "--max-depth", "2")
    err = outputs(result)
    assert result.returncode == 0, err
    described = server.calls("sub")[0]["messages"][1]["content"]
    assert "(text, 1 pages" in described and "(pdf" not in described, described


FORGED_REQUEST = ("import json, os, struct, sys, time\nwfd = json.loads(sys.argv[1])['wfd']\n"
                  "body = json.dumps({'type': 'request', 'id': 1, 'kind': 'llm_batch', "
                  "'payload': {'prompts': ['p'] * 150, 'model': None}}).encode()\n"
                  "os.write(wfd, struct.pack('>I', len(body)) + body)\ntime.sleep(120)")
LONG_NAME = ("try:\n    llm_query('x', model='m' * 300000)\nexcept Exception as e:\n"
             "    print('refusal of', len(str(e)), 'characters')")


def test_a_reply_the_child_never_reads_cannot_hang_the_parent(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("sub", lambda prompt: "y" * 1000)  # 150 answers: a reply far bigger than a pipe holds
    server.script("gpt-4o-mini", [LOOK, cell(LONG_NAME), cell(FORGED_REQUEST), FINISH])
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "rlmcli", "ask", str(FIXTURES / "contract.pdf"), "q", "--model",
                                 "openai/gpt-4o-mini", "--sub-model", "openai/sub", "--api-base", server.base,
                                 "--no-cache", "-v", "--timeout", "20", "--json", "-w", str(tmp_path / "ws")],
                                capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("rlm ask --timeout 20 hung on a reply its sandbox never read") from None
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert time.monotonic() - started < 60
    refusal = int(err.split("refusal of ", 1)[1].split()[0])
    assert refusal < 1000, "the refusal echoed the 300,000-character name"
    assert "stopped reading" in err and "still standing" in result.stdout.decode()


STRING_BATCH = ("import json, os, struct, sys\ncfg = json.loads(sys.argv[1])\n"
                "body = json.dumps({'type': 'request', 'id': 1, 'kind': 'llm_batch', "
                "'payload': {'prompts': 'x' * 10_000_000, 'model': None}}).encode()\n"
                "os.write(cfg['wfd'], struct.pack('>I', len(body)) + body)\n"
                "size = struct.unpack('>I', os.read(cfg['rfd'], 4))[0]\nreply = b''\n"
                "while len(reply) < size:\n    reply += os.read(cfg['rfd'], size - len(reply))\n"
                "print('reply:', json.loads(reply).get('error'))")


def test_a_batch_that_is_one_long_string_is_refused_before_it_is_split(server: FakeLLM) -> None:
    """Ten million one-character prompts would be ~800 MB of strings in the parent."""
    server.responder("sub", lambda prompt: "y")
    result, _ = ask(server, [LOOK, cell(STRING_BATCH), FINISH], "--sub-model", "openai/sub")
    err = outputs(result)
    assert result.returncode == 0, err
    assert "reply: llm_batch failed: llm_batch takes a list of prompts" in err, err
    assert server.calls("sub") == []
