"""What `rlm ask` shows: the tree (live and replayed), JSON, citations, traces, config, exits."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rlmcli.answer import check_citations, sources_text
from rlmcli.cli import app
from rlmcli.trace.live import LiveView, render_events
from rlmcli.trace.render import TraceTree
from rlmcli.trace.store import TraceWriter, load
from rlmcli.workspace.ingest import ingest
from rlmcli.workspace.store import Workspace
from tests.conftest import FIXTURES, ask_question, corpus_file, run_rlm
from tests.fakeserver import FakeLLM, Reply

SCRIPT = [
    "```python\nhits = grep('insolvent', doc='contract.pdf')\nprint(hits)\n```",
    "```python\nnotes = llm_batch(['a', 'b', 'c'])\nprint(notes)\n```",
    "```python\nFINAL('Insolvency: \"enters liquidation\" [contract.pdf p.7]')\n```",
]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace, _ = ingest([str(FIXTURES / "contract.pdf")], tmp_path / "ws")
    return workspace


def _ask(server: FakeLLM, ws: Workspace, question: str, observer: object, stream: bool = False) -> object:
    return ask_question(ws, question, None, observer, model="openai/gpt-4o-mini", api_base=server.base,
                        stream=stream)


def _record(width: int = 100) -> Console:
    return Console(file=io.StringIO(), record=True, width=width, force_terminal=False, color_system=None)


def test_tree_rendering_structure(server: FakeLLM, ws: Workspace) -> None:
    server.script("gpt-4o-mini", list(SCRIPT))
    server.responder("sub", lambda p: f"note {p}")
    tree = TraceTree()
    _ask(server, ws, "Which clause covers insolvency?", tree)
    console = _record()
    console.print(tree.render())
    text = console.export_text()
    lines = text.splitlines()
    assert lines[0].startswith("rlm · Which clause covers insolvency? · openai/gpt-4o-mini")
    assert "├── iteration 1" in text and "iteration 3" in text
    assert "hits = grep('insolvent', doc='contract.pdf')" in text
    assert "contract.pdf p.7 l.9: insolvent, enters liquidation" in text
    assert "llm_batch → openai/sub  3/3 ✓" in text
    assert "FINAL · Insolvency:" in text
    assert lines[-1].startswith("iterations 3 · calls 6 · tokens ")


def test_long_code_and_output_are_folded_unless_verbose(server: FakeLLM, ws: Workspace) -> None:
    long_code = "n = len(grep('x'))\n" + "\n".join(f"v{i} = {i}" for i in range(30)) + "\nprint('\\n'.join(str(i) for i in range(40)))"
    server.script("gpt-4o-mini", [f"```python\n{long_code}\n```", "```python\nFINAL('x')\n```"])
    tree = TraceTree()
    _ask(server, ws, "q", tree)
    short, full = _record(), _record()
    short.print(tree.render())
    full.print(tree.render(verbose=True))
    folded, unfolded = short.export_text(), full.export_text()
    assert "… 20 more lines (-v shows all)" in folded and "… 34 more lines" in folded
    assert "v29 = 29" in unfolded and "more lines" not in unfolded


def test_live_view_draws_on_a_terminal(server: FakeLLM, ws: Workspace) -> None:
    server.script("gpt-4o-mini", list(SCRIPT))
    server.responder("sub", lambda p: "n")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with LiveView(console) as live:
        _ask(server, ws, "q", live)
    screen = out.getvalue()
    assert "\x1b[" in screen and "iteration 2" in screen and "FINAL" in screen and "calls 6" in screen


def test_replayed_trace_renders_the_same_tree_as_live(server: FakeLLM, ws: Workspace, tmp_path: Path) -> None:
    server.script("gpt-4o-mini", list(SCRIPT))
    server.responder("sub", lambda p: "n")
    tree = TraceTree()
    writer = TraceWriter(tmp_path / "run.jsonl")

    def both(e: object) -> None:
        tree(e)  # type: ignore[arg-type]
        writer(e)  # type: ignore[arg-type]

    _ask(server, ws, "q", both)
    writer.close()
    live_console, replay_console = _record(), _record()
    live_console.print(tree.render(width=live_console.size.width))  # as the live view renders it
    render_events(load(tmp_path / "run.jsonl"), replay_console)
    assert replay_console.export_text() == live_console.export_text()


def test_citations_verified_and_wrong_quote_marked(ws: Workspace) -> None:
    good = 'Either party may end it if the other "enters liquidation" [contract.pdf p.7].'
    wrong = 'The fee is "EUR 99,999 per day" [contract.pdf p.4].'
    missing = "See [nonexistent.pdf p.3] and [contract.pdf p.99]."
    cites = check_citations(f"{good}\n{wrong}\n{missing}", ws)
    assert [(c.doc, c.page, c.status) for c in cites] == [
        ("contract.pdf", 7, "verified"), ("contract.pdf", 4, "failed"), (None, 3, "failed"),
        ("contract.pdf", 99, "failed")]
    assert cites[0].line == 9 and cites[1].quote == "EUR 99,999 per day"
    listing = sources_text(cites, ws)
    assert "✓ contract.pdf p.7 l.9: insolvent, enters liquidation" in listing
    assert '✗ contract.pdf p.4: quoted text not on this page: "EUR 99,999 per day"' in listing
    assert "✗ [nonexistent.pdf p.3]: no document 'nonexistent.pdf'" in listing
    assert "✗ [contract.pdf p.99]: contract.pdf has 8 pages" in listing


def _cli(server: FakeLLM, *extra: str, files: tuple[str, ...] = (str(FIXTURES / "contract.pdf"),)) -> subprocess.CompletedProcess[bytes]:
    return run_rlm("ask", *files, "Which clause covers insolvency?", "--model", "openai/gpt-4o-mini", "--sub-model",
                   "openai/sub", "--api-base", server.base, "--no-cache", *extra, env={"RLM_RETRY_BASE": "0.01"})


def test_json_output_schema(server: FakeLLM) -> None:
    server.script("gpt-4o-mini", list(SCRIPT))
    server.responder("sub", lambda p: "n")
    result = _cli(server, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema"] == "rlm.answer/1"
    assert set(data) == {"schema", "answer", "status", "limit", "error", "citations", "usage", "model_calls",
                         "iterations", "seconds", "run_id", "trace", "workspace", "sandbox"}
    assert [c["depth"] for c in data["model_calls"]] == [0, 0, 1, 1, 1, 0]
    assert all(c["cached"] is False for c in data["model_calls"])
    assert data["status"] == "answered" and data["limit"] is None and data["iterations"] == 3
    assert data["citations"] == [{"text": "[contract.pdf p.7]", "doc": "contract.pdf", "page": 7, "line": 9,
                                  "status": "verified", "note": "quote found on the page", "quote": "enters liquidation", "ocr": False,
                                  "file_line": None}]
    assert set(data["usage"]["per_model"]) == {"openai/gpt-4o-mini", "openai/sub"}
    assert set(data["usage"]["per_depth"]) == {"0", "1"}
    assert Path(data["trace"]).exists() and Path(data["trace"]).parent.name == "runs"


def test_runs_trace_and_html(server: FakeLLM, tmp_path: Path) -> None:
    server.script("gpt-4o-mini", list(SCRIPT))
    server.responder("sub", lambda p: "n")
    ws_dir = tmp_path / "ws"
    assert _cli(server, "-w", str(ws_dir), "-q").returncode == 0
    runner = CliRunner()
    listing = runner.invoke(app, ["runs", "-w", str(ws_dir)])
    run_id, _, status, cost, _, question = listing.stdout.strip().split("\t")
    assert status == "answered" and cost.startswith("$") and question == "Which clause covers insolvency?"
    shown = runner.invoke(app, ["trace", run_id[:12], "-w", str(ws_dir)])
    assert "llm_batch → openai/sub  3/3 ✓" in shown.stdout and "FINAL" in shown.stdout
    page = tmp_path / "run.html"
    assert runner.invoke(app, ["trace", "last", "-w", str(ws_dir), "--html", str(page)]).exit_code == 0
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<details open><summary>iteration 1</summary>" in html
    assert "enters liquidation" in html and "<script" in html and "http" not in html.split("<body>")[1].split("<script")[0]


def test_exit_status_1_when_nothing_could_be_ingested(server: FakeLLM, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = _cli(server, files=(str(empty),))
    assert result.returncode == 1
    assert b"rlm: error: empty.txt: empty file (0 bytes)" in result.stderr
    assert b"nothing to ask about" in result.stderr


def test_exit_status_2_for_usage_errors(server: FakeLLM) -> None:
    result = _cli(server, "--sandbox", "nope")
    assert result.returncode == 2 and b"--sandbox must be auto, strict or basic" in result.stderr


def test_ctrl_c_saves_the_trace_prints_the_partial_answer_and_exits_130(server: FakeLLM, tmp_path: Path) -> None:
    server.script("gpt-4o-mini", ["Looking around first.\n```python\nx = llm_batch(['slow'] * 4)\n```"])
    server.responder("sub", lambda p: Reply("late", delay=20))
    ws_dir = tmp_path / "ws"
    env = dict(os.environ, RLM_RETRY_BASE="0.01")
    proc = subprocess.Popen([sys.executable, "-m", "rlmcli", "ask", str(FIXTURES / "contract.pdf"), "q", "-w", str(ws_dir),
                             "--model", "openai/gpt-4o-mini", "--sub-model", "openai/sub", "--api-base", server.base,
                             "--no-cache"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    while len(server.calls("sub")) < 4 and time.time() < deadline:
        time.sleep(0.1)
    started = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.time() - started < 10  # it does not wait for the 20 s sub-calls
    assert out.decode().startswith("Looking around first.")
    assert b"rlm: interrupted" in err
    trace_file = next((ws_dir / "runs").glob("*.jsonl"))
    kinds = [e.kind for e in load(trace_file)]
    assert kinds[-1] == "run_finished" and "subcall_started" in kinds


def test_offline_on_a_real_document() -> None:
    faq = corpus_file("R-FAQ.pdf")
    result = run_rlm("ask", str(faq), "why are floating point numbers not equal", "--offline", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["schema"] == "rlm.passages/1" and data["passages"][0]["doc"] == "r-faq.pdf"
    assert any(p["page"] == 41 for p in data["passages"])


def test_search_command_json_pages_are_one_based(tmp_path: Path) -> None:
    runner = CliRunner()
    ws_dir = tmp_path / "ws"
    runner.invoke(app, ["ingest", str(FIXTURES / "contract.pdf"), "-w", str(ws_dir)])
    result = runner.invoke(app, ["search", "insolvency receiver", "-w", str(ws_dir), "-k", "2", "--json"])
    data = json.loads(result.stdout)
    assert data["schema"] == "rlm.passages/1" and data["query"] == "insolvency receiver"
    passages = data["passages"]
    assert passages[0]["doc"] == "contract.pdf" and passages[0]["page"] == 7 and passages[0]["line"] >= 1
    assert len(passages) <= 2 and {"score", "text", "heading"} <= set(passages[0])


def test_config_sources_flag_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('model = "openai/from-file"\nmax_calls = 50\nsandbox = "strict"\n')
    monkeypatch.setenv("RLM_CONFIG", str(cfg))
    monkeypatch.setenv("RLM_MAX_CALLS", "75")
    out = CliRunner().invoke(app, ["config"]).stdout
    lines = {line.split("#")[0].strip(): line.split("#", 1)[1].strip() for line in out.splitlines() if not line.startswith("#")}
    assert lines['model = "openai/from-file"'] == f"config file ({cfg})"
    assert lines["max_calls = 75"] == "environment (RLM_MAX_CALLS)"
    assert lines["max_iterations = 20"] == "default"
    from rlmcli.config import Settings

    resolved = Settings.resolve({"sandbox": "basic"})
    assert (resolved.sandbox, resolved.source("sandbox")) == ("basic", "flag")
    assert (resolved.max_calls, resolved.source("max_calls")) == (75, "environment (RLM_MAX_CALLS)")
    cfg.write_text("modle = 'typo'\n")
    bad = CliRunner().invoke(app, ["config"])
    assert bad.exit_code == 2 and "unknown settings modle" in bad.stderr


def test_config_set_keeps_the_files_comments_and_layout(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('# my settings\nmodel = "openai/a"  # the root\nsub_models = [\n  "openai/b",\n  "openai/x",\n]\n'
                   '\n[prices]\n"openai/a" = {input = 0.1, output = 0.2}\n')
    env = {"RLM_CONFIG": str(cfg)}
    assert run_rlm("config", "set", "sub_models", "openai/c", env=env).returncode == 0
    assert run_rlm("config", "set", "max_calls", "50", env=env).returncode == 0
    text = cfg.read_text()
    assert text.startswith('# my settings\nmodel = "openai/a"  # the root\n') and '"openai/b"' not in text
    assert 'sub_models = ["openai/c"]' in text and "max_calls = 50" in text and '"openai/a" = {input = 0.1' in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no temporary file left
    cfg.write_text("model = [unclosed\n")
    broken = run_rlm("config", "set", "max_calls", "5", env=env)
    assert broken.returncode == 2 and b"not valid TOML" in broken.stderr and cfg.read_text() == "model = [unclosed\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_model_text_streams_into_the_live_tree(server: FakeLLM, ws: Workspace) -> None:
    from rlmcli.engine.events import Recorder

    server.script("gpt-4o-mini", ["I will search the contract for the insolvency clause first.\n```python\nprint(grep('x'))\n```",
                                  "```python\nFINAL('done')\n```"])
    rec = Recorder()
    snapshots = []
    tree = TraceTree()

    def watch(e: object) -> None:
        rec(e)  # type: ignore[arg-type]
        tree(e)  # type: ignore[arg-type]
        if e.kind == "model_delta":  # type: ignore[attr-defined]
            console = _record()
            console.print(tree.render())
            snapshots.append(console.export_text())

    result = _ask(server, ws, "q", watch, stream=True)
    deltas = [e.text for e in rec.events if e.kind == "model_delta"]
    assert len(deltas) > 3 and "".join(deltas).startswith("I will search the contract")
    assert any("I will search ▌" in s or "▌" in s for s in snapshots)
    assert result.answer == "done" and result.usage["prompt_tokens"] > 0 and result.usage["cost"] > 0


def test_a_quote_belongs_to_the_citation_after_it_and_sources_are_listed_once(ws: Workspace) -> None:
    answer = ('Ends on insolvency, "enters liquidation" [contract.pdf p.7]; the fee is EUR 48,500 [contract.pdf p.4]; '
              'and again [contract.pdf p.7] and [contract.pdf p.7].')
    cites = check_citations(answer, ws)
    assert [(c.page, c.quote, c.line, c.status) for c in cites] == [
        (7, "enters liquidation", 9, "verified"), (4, None, None, "unchecked"), (7, None, None, "unchecked"),
        (7, None, None, "unchecked")]
    listing = sources_text(cites, ws).splitlines()
    assert listing == ["Sources:", "  ✓ contract.pdf p.7 l.9: insolvent, enters liquidation or has a receiver appointed over its assets.",
                       "  ○ contract.pdf p.4: cited, not checked", "  ○ contract.pdf p.7: cited, not checked",
                       "  (✓ quote found on the page · ○ cited, not checked (no quotation))"]


@pytest.mark.parametrize("args, env, config, message", [
    (["--max-iterations", "0"], {}, "", "--max-iterations must be at least 1, not 0"),
    (["--concurrency", "0"], {}, "", "--concurrency must be at least 1, not 0"),  # would block every sub-call
    (["--timeout", "-5"], {}, "", "--timeout must be greater than 0, not -5"),
    (["--max-cost", "-1"], {}, "", "--max-cost must be at least 0, not -1"),
    ([], {"RLM_MAX_CALLS": "0"}, "", "max_calls from the environment (RLM_MAX_CALLS) must be at least 1, not 0"),
    ([], {}, "max_tokens = -10\n", "max_tokens from the config file"),
    ([], {}, "timeout = nan\n", "must be a finite number"),
])
def test_impossible_limits_are_usage_errors_before_anything_runs(
        server: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        args: list[str], env: dict[str, str], config: str, message: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config)
    monkeypatch.setenv("RLM_CONFIG", str(cfg))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(app, ["ask", "-w", str(tmp_path / "none"), "q", "--model", "openai/gpt-4o-mini",
                                      "--api-base", server.base, *args])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert server.calls("gpt-4o-mini") == []
