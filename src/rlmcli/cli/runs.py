"""Saved runs: `rlm runs` lists them, `rlm trace` replays one (tree, JSON or an HTML page)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from rlmcli.cli.app import (
    Column,
    JsonOpt,
    WorkspaceOpt,
    app,
    emit_json,
    examples,
    handle_errors,
    open_workspace,
    print_listing,
    say,
    stdout_console,
)


def _cost(r: Any) -> str:
    from rlmcli.engine.budget import dollars

    return dollars(r.cost, "unknown")


def _seconds(r: Any) -> str:
    return f"{r.seconds:.1f}s" if r.seconds is not None else "-"


@app.command(epilog=examples("rlm runs -w deal", "rlm runs --all", "rlm runs -w deal --json",
                             "rlm runs --all | cut -f1,4   # off a terminal: tab-separated, no header"))
@handle_errors
def runs(
    workspace: Optional[str] = WorkspaceOpt,
    every: bool = typer.Option(False, "--all", help="Runs of every workspace."),
    as_json: bool = JsonOpt,
) -> None:
    """List the runs saved in a workspace, newest first: id, time, status, cost, duration, question.
    On a terminal, aligned columns with a header; in a pipe, tab-separated lines without one."""
    from rlmcli.trace.store import list_runs

    found: list[tuple[Any, Any]]  # (the WorkspaceInfo with --all, else None; the RunSummary)
    if every:
        from rlmcli.workspace.registry import list_workspaces

        found = [(info, r) for info in list_workspaces(with_size=False) for r in list_runs(info.path)]
    else:
        ws = open_workspace(workspace, need_documents=False)
        found = [(None, r) for r in list_runs(ws.root)]
    found.sort(key=lambda pair: pair[1].started, reverse=True)
    if as_json:
        emit_json("rlm.runs/1", {"runs": [{"workspace": info.name if info else str(ws.root), "run_id": r.run_id,
                                           "started": r.started, "status": r.status, "cost": r.cost,
                                           "seconds": r.seconds, "question": r.question, "error": r.error,
                                           "trace": str(r.path)} for info, r in found]})
        return
    if not found:
        where = "any workspace" if every else str(workspace or ws.root)
        say(f"no runs in {where} yet: rlm ask -w {workspace or 'WORKSPACE'} \"a question\"")
        return
    # On a terminal a run is named by its id's last part (`rlm trace 6f5d2a` finds it) and its
    # start time shortly; a pipe gets the full id and an ISO time.
    columns = [Column("run"), Column("started"), Column("status"), Column("cost", "right"),
               Column("time", "right"), Column("question", wide=True)]
    rows, plain = [], []
    today = time.strftime("%Y-%m-%d")
    for info, r in found:
        local = time.localtime(r.started)
        short = time.strftime("%H:%M" if time.strftime("%Y-%m-%d", local) == today else "%b %d %H:%M", local)
        rows.append([r.run_id.rsplit("-", 1)[-1], short, r.status, _cost(r), _seconds(r), r.question]
                    + ([info.label] if info else []))
        plain.append([r.run_id, time.strftime("%Y-%m-%dT%H:%M:%S", local), r.status, _cost(r), _seconds(r),
                      r.question] + ([info.name] if info else []))
    if every:
        columns.append(Column("workspace", wide=True))
    print_listing(columns, rows, plain)


@app.command(epilog=examples("rlm trace -w deal", "rlm trace 20261202-1430 -w deal -v",
                             "rlm trace last -w deal --html run.html", "rlm trace -w deal --json"))
@handle_errors
def trace(
    run: str = typer.Argument("last", metavar="[RUN]", help="Run id, a unique prefix or its last part (as `rlm runs` shows it); 'last' for the newest."),
    workspace: Optional[str] = WorkspaceOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Full code and outputs, and every model call."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML page instead."),
    as_json: bool = typer.Option(False, "--json", help="The run's events as JSON (schema rlm.trace/1)."),
    no_color: bool = typer.Option(False, "--no-color", help="No colour."),
) -> None:
    """Re-render a saved run from its trace file: failed and interrupted runs show how they ended."""
    from rlmcli.trace.store import find_run, load, summarize

    ws = open_workspace(workspace, need_documents=False)
    if not any((ws.root / "runs").glob("*.jsonl")):
        from rlmcli.errors import RlmError

        name = workspace or str(ws.root)
        raise RlmError(f"no runs in {name} yet: rlm ask -w {name} \"a question\"")
    path = find_run(ws.root, run)
    events = load(path)
    if as_json:
        summary = summarize(path, events)
        emit_json("rlm.trace/1", {"run_id": path.stem, "status": summary.status, "error": summary.error,
                                  "question": summary.question, "events": [e.to_dict() for e in events]})
        return
    if html is not None:
        from rlmcli.answer import check_citations, sources_text
        from rlmcli.engine.events import FinalAnswer
        from rlmcli.trace.html import write_html

        answer = next((e.answer for e in events if isinstance(e, FinalAnswer) and e.depth == 0), "")
        sources = sources_text(check_citations(answer, ws), ws) if answer else ""  # checked as `ask` checks them
        write_html(events, html, title=f"rlm run {path.stem}", sources=sources)
        say(f"wrote {html}")
        return

    from rlmcli.trace.live import render_events

    render_events(events, stdout_console(no_color=no_color or None), verbose)
