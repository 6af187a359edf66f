"""What a person sees in an 80x24 pane (issue #25): `rlm` run in a real pseudo-terminal, its
output played into a terminal emulator (pyte) with scrollback, each case typed as a user would."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM, Reply
from tests.terminal import run_in_terminal

CONTRACT = str(FIXTURES / "contract.pdf")
LOOK = ("Let me look for the termination clauses first.\n```python\nhits = grep('terminat')\nfor h in hits[:3]:\n"
        "    print(h)\n```")
DONE = "```python\nFINAL('Either party may terminate on 30 days notice [contract.pdf p.7]')\n```"


def _model(server: FakeLLM) -> list[str]:
    return ["--model", "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache"]


def _tree(lines: list[str]) -> list[str]:
    """The tree printed at the end: from its root line to its footer."""
    start = max(i for i, line in enumerate(lines) if line.startswith("rlm · "))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("iterations "))
    return lines[start:end + 1]


def test_a_streamed_reply_is_shown_once_and_the_final_tree_is_the_saved_trace(server: FakeLLM, tmp_path: Path) -> None:
    """A 429 and a 500 before the reply, which streams in slowly: the preview is drawn while it
    streams, then gives way to the cell; nothing raw (fences, cursor) is left on screen; the tree
    printed at the end is line for line what `rlm trace` replays."""
    server.script("gpt-4o-mini", [Reply(status=429), Reply(status=500), Reply(LOOK, pace=0.05), Reply(DONE, pace=0.05)])
    ws = tmp_path / "deal"
    shown = run_in_terminal("ask", CONTRACT, "what are the termination clauses?", "-w", str(ws), *_model(server),
                            env={"RLM_RETRY_BASE": "0.05"})
    assert shown.returncode == 0, shown.text
    assert "▌".encode() in shown.raw  # the preview was drawn as the reply streamed in...
    assert b"```" not in shown.raw  # (its code highlighted, without the fences)
    assert "▌" not in shown.text  # ...and left nothing behind
    assert shown.text.count("hits = grep('terminat')") == 1  # the code once, as its cell
    assert shown.text.count("Let me look for the termination clauses first.") == 1
    tree = _tree(shown.lines)
    assert tree[-1].startswith("iterations 2 · calls 2 ·") and tree[-1].endswith("· 2 retries")
    assert sum("↻ openai/gpt-4o-mini · retry" in line for line in tree) == 2
    replay = run_in_terminal("trace", "-w", str(ws))
    assert replay.returncode == 0 and _tree(replay.lines) == tree
    assert max(len(line) for line in shown.lines) <= 80


def test_a_refused_connection_ends_the_tree_with_the_failure_not_an_empty_final(tmp_path: Path) -> None:
    shown = run_in_terminal("ask", CONTRACT, "what are the termination clauses?", "-w", str(tmp_path / "ws"),
                            "--model", "openai/gpt-4o-mini", "--api-base", "http://127.0.0.1:9/v1", "--no-cache")
    assert shown.returncode == 4
    tree = _tree(shown.lines)
    assert not any("FINAL" in line for line in tree)
    assert "✗ failed (the error is above)" in "\n".join(tree) and "connection refused" in "\n".join(tree)
    error = " ".join(shown.text[shown.text.index("rlm: error:"):].split())  # lines joined with spaces
    assert "(after 3 retries): connection refused" in error and "is the server running?" in error  # no word cut


def test_folded_iterations_say_what_they_did_and_every_one_is_listed_at_the_end(server: FakeLLM, tmp_path: Path) -> None:
    """Twenty iterations do not fit 24 lines: while the run goes, old ones fold and the oldest
    share one line; at the end each is listed once, with its code's first line and what it printed."""
    steps = [f"Step {i}: I will count the hits once more.\n```python\nfound_{i} = grep('terminat')\n"
             f"print(len(found_{i}), 'hits')\n```" for i in range(1, 21)]
    server.script("gpt-4o-mini", [*(Reply(s, pace=0.03) for s in steps), Reply(DONE)])
    shown = run_in_terminal("ask", CONTRACT, "what are the termination clauses?", "-w", str(tmp_path / "ws"),
                            *_model(server), "--max-iterations", "25")
    assert shown.returncode == 0, shown.text
    assert re.search(rb"iterations 1\xe2\x80\x93\d+ \xc2\xb7 \d+ cells \xc2\xb7 folded \(listed when the run ends\)",
                     shown.raw)  # the live view promised it...
    tree = _tree(shown.lines)
    for i in range(1, 21):  # ...and kept the promise: each iteration once, saying what it ran and printed
        assert sum(bool(re.search(rf"\biteration {i}\b", line)) for line in shown.lines) == 1, i
        assert any(re.search(rf"iteration {i} · found_{i} = grep\('terminat'\) → 1 line · \d", line) for line in tree), i
    assert not any("folded" in line for line in shown.lines)


def test_off_a_terminal_the_summary_line_counts_the_retries(server: FakeLLM, tmp_path: Path) -> None:
    server.script("gpt-4o-mini", [Reply(status=429), Reply(status=500), LOOK, DONE])
    result = run_rlm("ask", CONTRACT, "what are the termination clauses?", "-w", str(tmp_path / "ws"), *_model(server),
                     env={"RLM_RETRY_BASE": "0.05"})
    assert result.returncode == 0
    summary = result.stderr.decode().splitlines()[-1]
    assert re.match(r"rlm: answered in 2 iterations, 2 calls, 2 retries, [\d,]+ tokens, ", summary), summary
