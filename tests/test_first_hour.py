"""What a new user trips over in the first hour (issue #15): each case as the user meets it."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from rlmcli import __version__
from tests.conftest import CORPUS, FIXTURES, corpus_file, run_rlm
from tests.fakeserver import FakeLLM, Reply

CONTRACT = str(FIXTURES / "contract.pdf")
LOOK = "```python\nprint(grep('terminat')[:2])\n```"  # a model that looks before it answers


def _err(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode()


def test_version_flag_prints_the_version() -> None:
    for flag in ("--version", "-V"):
        result = run_rlm(flag)
        assert (result.returncode, result.stdout.decode()) == (0, f"rlm {__version__}\n")


def test_a_failed_ingest_leaves_no_workspace_and_later_commands_say_so(tmp_path: Path, rlm_home: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    failed = run_rlm("ingest", str(empty))
    assert failed.returncode == 1 and "empty.txt: empty file" in _err(failed)
    assert failed.stdout == b""  # no workspace path: none was made
    assert not any((rlm_home / "auto").glob("*"))
    for args in (["search", "q"], ["ls"], ["runs"]):
        result = run_rlm(*args)
        assert result.returncode == 1, args
        assert _err(result) == "rlm: error: no workspaces yet: ingest something first (`rlm ingest FILE`)\n", args
    asked = run_rlm("ask", "a question")  # no workspace to fall back on: it names the two ways
    assert (asked.returncode, _err(asked)) == (2, "rlm: error: ask needs FILE... or -w WORKSPACE before the question: "
                                                  "no workspace has been used yet\n")


def test_half_made_workspaces_give_one_line_not_a_traceback(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run_rlm("ingest", str(FIXTURES / "notes.md"), "-w", str(ws)).returncode == 0
    (ws / "index.sqlite").write_bytes(b"not a database")
    for leftover in ws.glob("index.sqlite-*"):
        leftover.unlink()
    result = run_rlm("search", "anything", "-w", str(ws))
    assert result.returncode == 1 and "Traceback" not in _err(result)
    assert _err(result) == (f"rlm: error: {ws / 'index.sqlite'}: the search index is missing or damaged (file is not a "
                            "database); ingest the files again into a new workspace\n")
    (ws / "manifest.json").write_text("{")
    listed = run_rlm("ls", "-w", str(ws))
    assert listed.returncode == 1 and _err(listed).startswith(f"rlm: error: {ws / 'manifest.json'}: unreadable manifest")
    bare = tmp_path / "bare"
    bare.mkdir()
    assert _err(run_rlm("ls", "-w", str(bare))).startswith(f"rlm: error: no rlm workspace at {bare}")


def test_an_unquoted_question_is_a_usage_error(server: FakeLLM) -> None:
    result = run_rlm("ask", CONTRACT, "What", "is", "R", "--model", "openai/gpt-4o-mini", "--api-base", server.base)
    assert result.returncode == 2
    assert _err(result) == "rlm: error: no such file 'What' - quote the question: rlm ask FILE \"...\"\n"
    assert server.requests == []  # nothing was asked


def test_runs_without_runs_says_so_and_all_lists_across_workspaces(server: FakeLLM, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_rlm("ingest", CONTRACT, "-w", str(a))
    none = run_rlm("runs", "-w", str(a))
    assert none.returncode == 0 and none.stdout == b""
    assert _err(none) == f"no runs in {a} yet: rlm ask -w {a} \"a question\"\n"
    assert _err(run_rlm("runs", "--all")) == "no runs in any workspace yet: rlm ask -w WORKSPACE \"a question\"\n"

    server.script("gpt-4o-mini", [LOOK, "```python\nFINAL('one')\n```", LOOK, "```python\nFINAL('two')\n```"])
    for ws, question in ((a, "first question"), (b, "second question")):
        files = [CONTRACT] if ws == b else []
        assert run_rlm("ask", *files, question, "-w", str(ws), "--model", "openai/gpt-4o-mini",
                       "--api-base", server.base, "--no-cache").returncode == 0
    listing = json.loads(run_rlm("runs", "--all", "--json").stdout)
    assert listing["schema"] == "rlm.runs/1"
    assert [(r["workspace"], r["question"], r["status"]) for r in listing["runs"]] == [
        (str(b), "second question", "answered"), (str(a), "first question", "answered")]


def test_automatic_workspace_names_work_wherever_a_workspace_is_taken(server: FakeLLM) -> None:
    path = Path(run_rlm("ingest", CONTRACT).stdout.decode().strip())
    shown = run_rlm("workspaces").stdout.decode()
    name = f"auto:{path.name}"
    assert name in shown
    for args in (["ls", "-w", name], ["ls", "-w", name[:12]], ["search", "termination", "-w", name], ["runs", "-w", name]):
        result = run_rlm(*args)
        assert result.returncode == 0, (args, _err(result))
    server.script("gpt-4o-mini", [LOOK, "```python\nFINAL('asked')\n```"])
    asked = run_rlm("ask", "q", "-w", name, "--model", "openai/gpt-4o-mini", "--api-base", server.base)
    assert asked.returncode == 0 and asked.stdout == b"asked\n"
    assert _err(run_rlm("ls", "-w", "auto:zzz")) == "rlm: error: 'auto:zzz' names no automatic workspace (see `rlm workspaces`)\n"


def test_every_listing_has_json_with_a_schema(server: FakeLLM, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_rlm("ingest", CONTRACT, "-w", str(ws))
    server.script("gpt-4o-mini", [LOOK, "```python\nFINAL('x')\n```"])
    run_rlm("ask", "q", "-w", str(ws), "--model", "openai/gpt-4o-mini", "--api-base", server.base)
    model = ["--model", "openai/gpt-4o-mini", "--api-base", server.base]
    expected = {("ls", "-w", str(ws)): "rlm.documents/1", ("runs", "-w", str(ws)): "rlm.runs/1",
                ("workspaces",): "rlm.workspaces/1", ("config",): "rlm.config/1", ("trace", "-w", str(ws)): "rlm.trace/1",
                ("models", *model): "rlm.models/1", ("search", "termination", "-w", str(ws)): "rlm.passages/1"}
    for args, schema in expected.items():
        result = run_rlm(*args, "--json")
        assert result.returncode == 0, (args, _err(result))
        assert json.loads(result.stdout)["schema"] == schema, args
    trace = json.loads(run_rlm("trace", "-w", str(ws), "--json").stdout)
    assert trace["status"] == "answered" and trace["events"][0]["kind"] == "run_started"


def test_config_set_unset_and_path(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "config.toml"
    env = {"RLM_CONFIG": str(cfg), "RLM_MAX_CALLS": None}
    assert run_rlm("config", "path", env=env).stdout.decode() == f"{cfg}\n"
    assert run_rlm("config", "set", "max_calls", "40", env=env).returncode == 0
    assert run_rlm("config", "set", "sub_models", "openai/a,openai/b", env=env).returncode == 0
    assert cfg.read_text() == 'max_calls = 40\nsub_models = ["openai/a", "openai/b"]\n'
    shown = run_rlm("config", "show", env=env).stdout.decode()
    assert re.search(rf"^max_calls = 40 +# config file \({re.escape(str(cfg))}\)$", shown, re.M)
    bad = run_rlm("config", "set", "max_calls", "lots", env=env)
    assert bad.returncode == 2 and cfg.read_text().startswith("max_calls = 40\n")  # a bad value never lands
    assert run_rlm("config", "set", "modle", "x", env=env).returncode == 2
    assert run_rlm("config", "unset", "max_calls", env=env).returncode == 0
    assert re.search(r"^max_calls = \d+ +# default$", run_rlm("config", env=env).stdout.decode(), re.M)


def test_a_failed_run_replays_with_its_status_and_error(server: FakeLLM, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    server.script("gpt-4o-mini", [Reply(status=401)])
    failed = run_rlm("ask", CONTRACT, "q", "-w", str(ws), "--model", "openai/gpt-4o-mini", "--api-base", server.base)
    assert failed.returncode == 4
    listed = run_rlm("runs", "-w", str(ws)).stdout.decode()
    assert "\tfailed\t" in listed
    replay = run_rlm("trace", "-w", str(ws)).stdout.decode()
    assert "✗ failed" in replay and "HTTP 401" in replay and "check the API key" in replay
    data = json.loads(run_rlm("trace", "-w", str(ws), "--json").stdout)
    assert data["status"] == "failed" and "HTTP 401" in data["error"]


def test_a_killed_run_replays_as_unfinished(server: FakeLLM, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_rlm("ingest", CONTRACT, "-w", str(ws))
    server.script("gpt-4o-mini", [Reply("never", delay=30)])
    proc = subprocess.Popen([sys.executable, "-m", "rlmcli", "ask", "q", "-w", str(ws), "--model", "openai/gpt-4o-mini",
                             "--api-base", server.base], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not server.requests and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no chance to record an ending
    proc.communicate()
    replay = run_rlm("trace", "-w", str(ws))
    assert replay.returncode == 0
    assert "the run never finished" in replay.stdout.decode()
    assert "\tunfinished\t" in run_rlm("runs", "-w", str(ws)).stdout.decode()


def _run_with_events(iterations: int) -> list[object]:
    from rlmcli.engine.events import Recorder
    from rlmcli.engine.providers.scripted import ScriptedProvider
    from rlmcli.workspace.ingest import ingest
    from tests.conftest import ask_question

    ws, _ = ingest([CONTRACT], None)
    model = ScriptedProvider()
    steps = [f"Step {i}: looking.\n```python\nhits = grep('terminat')\nfor n in range(6):\n    print('line', n, {i})\n```"
             for i in range(iterations - 1)]
    model.script("root", [*steps, "```python\nFINAL('done')\n```"])
    rec = Recorder()
    result = ask_question(ws, "q", model, rec, max_iterations=iterations + 5)
    assert (result.status, result.iterations) == ("answered", iterations), result.error
    return list(rec.events)


def test_the_live_tree_never_outgrows_the_terminal_or_repeats_in_scrollback() -> None:
    """A 20-iteration run on a 24-line terminal, played into a terminal emulator (pyte) that keeps
    its scrollback: each iteration appears once, in the compact tree printed at the end."""
    import pyte
    from rich.console import Console

    from rlmcli.trace.live import LiveView

    events = _run_with_events(20)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, height=24, color_system=None, legacy_windows=False)
    with LiveView(console) as view:
        view.live.auto_refresh = False
        for e in events:
            view(e)
            frame = console.render_lines(view._frame(), console.options)
            assert len(frame) <= 24 - 2
            view.live.refresh()
    screen = pyte.HistoryScreen(100, 24, history=10_000)
    pyte.Stream(screen).feed(out.getvalue().replace("\n", "\r\n"))
    lines = ["".join(ch.data for ch in row.values()).rstrip() for row in screen.history.top]
    lines += [row.rstrip() for row in screen.display]
    text = [line for line in lines if line]
    for i in (1, 10, 20):
        assert sum(1 for line in text if re.search(rf"\biteration {i}\b", line)) == 1, i
    assert sum("iterations 20 · calls 20" in line for line in text) == 1
    assert len(text) <= 20 + 4  # one line per iteration, the question, FINAL and the footer


def test_ctrl_c_during_a_parallel_ingest_is_one_line_and_leaves_a_consistent_workspace(tmp_path: Path) -> None:
    """Ctrl-C goes to the terminal's whole process group: the PDF workers and the token counter
    get it too. Whenever it lands: one line, exit 130, and a workspace that opens (or none)."""
    pdfs = sorted(str(p) for p in CORPUS.glob("*.pdf"))
    corpus_file("fullrefman.pdf")
    for n, delay in enumerate((0.3, 1.5, 3.0)):
        ws = tmp_path / f"ws{n}"
        proc = subprocess.Popen([sys.executable, "-m", "rlmcli", "ingest", *pdfs, "-w", str(ws)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            continue  # finished first on a fast machine: nothing to interrupt
        assert proc.returncode == 130, err
        lines = err.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rlm: interrupted: "), lines
        deadline = time.time() + 5  # a helper that saw its parent go exits at its next read
        while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).stdout and time.time() < deadline:
            time.sleep(0.1)
        assert subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).stdout == b""  # no workers left
        if lines[0] == "rlm: interrupted: nothing was ingested" or "while starting up" in lines[0]:
            assert not ws.exists()  # no empty workspace left behind
            continue
        listed = run_rlm("ls", "-w", str(ws), "--json")
        assert listed.returncode == 0
        docs = json.loads(listed.stdout)["documents"]
        assert f"{len(docs)} new documents had been committed" in lines[0]
        for doc, rec in docs.items():
            assert len(list((ws / "docs" / doc / "pages").iterdir())) == rec["pages"]
        assert not (ws / ".tmp").exists() or not any((ws / ".tmp").iterdir())
        again = run_rlm("ingest", *pdfs, "-w", str(ws))  # the same command finishes the job
        assert again.returncode == 0 and f"ingested {len(pdfs) - len(docs)} new" in _err(again)


def test_offline_ranking_puts_the_section_named_by_the_question_first() -> None:
    result = run_rlm("ask", CONTRACT, str(FIXTURES / "contract.docx"),
                     "What are the termination clauses, and what notice does each need?", "--offline", "--json")
    assert result.returncode == 0
    passages = json.loads(result.stdout)["passages"]
    assert [p["heading"] for p in passages[:2]] == ["6. Termination", "6. Termination"]
    assert passages[2]["heading"] == "4. Confidentiality"  # mentions termination, ranks after it


def test_every_command_help_ends_with_examples() -> None:
    import typer.main
    from typer.testing import CliRunner

    from rlmcli.cli import app

    root = typer.main.get_command(app)
    paths: list[list[str]] = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        paths.extend([name, sub] for sub in getattr(command, "commands", {}))  # a group's subcommands
    assert len(paths) >= 16
    for path in paths:
        shown = CliRunner().invoke(app, [*path, "--help"])
        assert shown.exit_code == 0 and re.search(r"Examples:\n\s+(rlm|\S+ \| rlm) ", shown.stdout), path
