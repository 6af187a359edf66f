"""What a person sees in an 80x24 pane (issue #25): `rlm` run in a real pseudo-terminal, its
output played into a terminal emulator (pyte) with scrollback, each case typed as a user would."""

from __future__ import annotations

import json
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
    server.script("gpt-4o-mini", [Reply(status=429), Reply(status=500), Reply(LOOK, pace=0.08), Reply(DONE, pace=0.08)])
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


def _two_runs(server: FakeLLM, ws: Path) -> None:
    server.script("gpt-4o-mini", [LOOK, DONE, LOOK, DONE])
    for question in ("the first question", "the second question"):
        assert run_rlm("ask", CONTRACT, question, "-w", str(ws), *_model(server)).returncode == 0


def test_runs_are_aligned_under_a_header_on_a_terminal_and_tab_separated_in_a_pipe(server: FakeLLM, tmp_path: Path) -> None:
    ws = tmp_path / "deal"
    _two_runs(server, ws)
    shown = run_in_terminal("runs", "-w", str(ws))
    assert shown.returncode == 0
    assert shown.lines[0].split() == ["run", "started", "status", "cost", "time", "question"]
    assert [line.split()[-2:] for line in shown.lines[1:]] == [["second", "question"], ["first", "question"]]  # newest first
    assert len({line.index("answered") for line in shown.lines[1:]}) == 1  # aligned
    every = run_in_terminal("runs", "--all")
    assert every.lines[0].split() == ["run", "started", "status", "cost", "time", "question", "workspace"]
    assert "second question" in every.lines[1] and "first question" in every.lines[2]
    piped = run_rlm("runs", "-w", str(ws)).stdout.decode().splitlines()
    rows = [line.split("\t") for line in piped]
    assert [r[5] for r in rows] == ["the second question", "the first question"] and rows[0][2] == "answered"
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", rows[0][0]) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", rows[0][1])
    short = shown.lines[1].split()[0]  # the name a terminal shows is one `rlm trace` takes
    assert rows[0][0].endswith("-" + short)
    replay = run_rlm("trace", short, "-w", str(ws))
    assert replay.returncode == 0 and "the second question" in replay.stdout.decode()


def test_automatic_workspaces_are_named_by_what_they_hold_even_when_pruning(tmp_path: Path, rlm_home: Path) -> None:
    import os
    import time

    notes = str(FIXTURES / "notes.md")
    auto = Path(run_rlm("ingest", CONTRACT, notes).stdout.decode().strip())
    assert run_rlm("ingest", notes, "-w", "deal").returncode == 0
    shown = run_in_terminal("workspaces")
    assert shown.lines[0].split() == ["workspace", "docs", "tokens", "size", "used", "path"]
    label = f"auto:{auto.name[:6]} (contract.pdf +1)"
    assert any(line.startswith(label) for line in shown.lines[1:]), shown.text
    assert all(len(line) <= 80 for line in shown.lines)
    assert run_rlm("ls", "-w", f"auto:{auto.name[:6]}").returncode == 0  # the label's name is a -w name
    old = time.time() - 40 * 86400
    os.utime(auto / ".last_used", (old, old))
    asked = run_in_terminal("workspaces", "--prune", "30", keys=[("?", b"n\r")])
    assert asked.returncode == 1 and auto.exists()
    question = " ".join(asked.text.split())
    assert f"delete 1 automatic workspace unused for 30 days: {label}" in question and "nothing was deleted" in question


def test_models_on_a_terminal_fit_80_columns_and_say_what_an_unknown_window_means() -> None:
    shown = run_in_terminal("models", "--model", "openai/gpt-4o-mini", "--sub-model", "openai/my-local-model")
    assert shown.returncode == 0
    assert shown.lines[0].split() == ["role", "model", "key", "window", "$/M", "in", "/", "out"]
    root, sub = shown.lines[1].split(), shown.lines[2].split()
    assert root[:2] == ["root", "openai/gpt-4o-mini"] and "128,000" in root
    assert sub[:2] == ["sub", "openai/my-local-model"] and sub[-2:] == ["unknown", "unknown"]
    assert "window unknown to litellm's map: a dry run assumes 128,000 tokens" in shown.text
    assert all(len(line) <= 80 for line in shown.lines)


def test_a_dry_run_is_a_table_on_a_terminal_and_rlm_estimate_json_with_unknown_prices_null() -> None:
    args = ["ask", CONTRACT, "what are the termination clauses?", "--dry-run", "--model", "openai/my-local-model",
            "--api-base", "http://127.0.0.1:9/v1", "--max-calls", "20"]
    shown = run_in_terminal(*args)
    assert shown.returncode == 0 and "{" not in shown.text
    table = {line.split()[0]: line for line in shown.lines if line.split() and line.split()[0] in ("role", "root", "sub", "total")}
    assert table["role"].split()[:3] == ["role", "model", "calls"]
    root = table["root"].split()
    assert root[:3] == ["root", "openai/my-local-model", "20"]  # never more calls than --max-calls
    assert "128,000* + 4,096" in table["root"] and root[-2:] == ["unknown", "unknown"]
    assert "* window unknown to litellm's map: 128,000 tokens assumed" in shown.text
    assert table["total"].split()[-1] == "unknown" and "$0.0000" not in shown.text
    assert "the worst case cost is unknown" in " ".join(shown.text.split())
    estimate = json.loads(run_rlm(*args, "--json").stdout)
    assert estimate["schema"] == "rlm.estimate/1" and estimate["worst_case_cost"] is None and not estimate["price_known"]
    assert [(m["role"], m["calls"], m["worst_case_cost"], m["context_window"], m["prompt_tokens_per_call"])
            for m in estimate["models"]] == [("root", 20, None, None, 128_000), ("sub", 0, None, None, 128_000)]
    priced = json.loads(run_rlm(*args[:5], "openai/gpt-4o-mini", "--max-cost", "0.25", "--json").stdout)
    assert priced["worst_case_cost"] == 0.25 and priced["capped_by_max_cost"] and priced["price_known"]


def test_tab_completes_settings_levels_modes_executors_workspaces_and_documents(rlm_home: Path, tmp_path: Path) -> None:
    """Typed into bash with rlm's completion installed: no file names where rlm knows the answer."""
    import shutil

    from tests.terminal import Shell

    assert shutil.which("tmux"), "tmux is needed to type into a real shell"
    assert run_rlm("ingest", CONTRACT, "-w", "deal").returncode == 0
    auto = Path(run_rlm("ingest", str(FIXTURES / "notes.md")).stdout.decode().strip())
    (tmp_path / "a-file-that-must-not-be-offered.txt").write_text("x")
    shell = Shell({"RLM_HOME": str(rlm_home), "HOME": str(tmp_path)})
    try:
        shell.type(f"cd {tmp_path}\n")
        cases = [("rlm config set max_c", 2, ["max_calls", "max_cost"]),
                 ("rlm config set sandbox ", 2, ["auto", "basic", "strict"]),
                 ("rlm config unset oc", 1, ["rlm config unset ocr"]),
                 ("rlm ask -w deal q --sandbox ", 2, ["auto", "basic", "strict"]),
                 ("rlm ingest . --ocr ", 2, ["always", "auto", "never"]),
                 ("rlm ingest . --executor ", 2, ["local", "ray"]),
                 ("rlm ask -w ", 2, ["deal", f"auto:{auto.name}"]),
                 ("rlm show -w deal ", 1, ["rlm show -w deal contract.pdf"]),
                 ("rlm search -w deal termination --doc con", 1, ["--doc contract.pdf"])]
        for line, tabs, expected in cases:
            shell.clear_line()
            shell.type("clear\n")
            shell.type(line)
            shell.tab(tabs)
            for text in expected:
                shown = shell.wait_for(text)
            assert "a-file-that-must-not-be-offered" not in shown, (line, shown)
    finally:
        shell.close()


def test_one_big_file_shows_its_name_at_once_and_then_its_pages(tmp_path: Path) -> None:
    from tests.conftest import corpus_file

    big = corpus_file("fullrefman.pdf")  # 2,415 pages: seconds of work in one file
    shown = run_in_terminal("ingest", str(big), "-w", str(tmp_path / "ws"))
    assert shown.returncode == 0
    frames = shown.raw.decode(errors="replace")
    first = frames[frames.index("ingesting"):].split("\r")[0]
    assert "fullrefman.pdf" in first  # the first frame drawn names the file (PDF pages now come fast)
    pages = [int(n.replace(",", "")) for n in re.findall(r"page ([\d,]+)/2,415", frames)]
    assert pages and pages == sorted(pages)  # then page by page, with the time left from pages, not files
    assert "ingested 1 new (2415 pages" in shown.text
