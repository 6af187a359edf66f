"""Saved runs: `rlm runs` lists them, `rlm trace` replays one (tree, JSON or an HTML page)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from rlmcli.cli.app import JsonOpt, WorkspaceOpt, app, emit_json, examples, handle_errors, open_workspace, say, stdout_console


def _row(r: Any) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
    from rlmcli.engine.budget import dollars

    cost = dollars(r.cost, "unknown")
    secs = f"{r.seconds:.1f}s" if r.seconds is not None else "-"
    return f"{r.run_id}\t{when}\t{r.status}\t{cost}\t{secs}\t{r.question}"


@app.command(epilog=examples("rlm runs -w deal", "rlm runs --all", "rlm runs -w deal --json"))
@handle_errors
def runs(
    workspace: Optional[str] = WorkspaceOpt,
    every: bool = typer.Option(False, "--all", help="Runs of every workspace, newest first."),
    as_json: bool = JsonOpt,
) -> None:
    """List the runs saved in a workspace: id, time, status, cost, duration, question."""
    from rlmcli.trace.store import list_runs

    if every:
        from rlmcli.workspace.registry import list_workspaces

        found = [(info.name, r) for info in list_workspaces(with_size=False) for r in list_runs(info.path)]
    else:
        ws = open_workspace(workspace, need_documents=False)
        found = [(str(ws.root), r) for r in list_runs(ws.root)]
    found.sort(key=lambda pair: pair[1].started, reverse=every)
    if as_json:
        emit_json("rlm.runs/1", {"runs": [{"workspace": w, "run_id": r.run_id, "started": r.started, "status": r.status,
                                           "cost": r.cost, "seconds": r.seconds, "question": r.question,
                                           "error": r.error, "trace": str(r.path)} for w, r in found]})
        return
    if not found:
        where = "any workspace" if every else str(workspace or ws.root)
        say(f"no runs in {where} yet: rlm ask -w {workspace or 'WORKSPACE'} \"a question\"")
        return
    for name, r in found:
        typer.echo(f"{name}\t{_row(r)}" if every else _row(r))


@app.command(epilog=examples("rlm trace -w deal", "rlm trace 20261202-1430 -w deal -v",
                             "rlm trace last -w deal --html run.html", "rlm trace -w deal --json"))
@handle_errors
def trace(
    run: str = typer.Argument("last", metavar="[RUN]", help="Run id (or a unique prefix; 'last' for the newest)."),
    workspace: Optional[str] = WorkspaceOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Full code and outputs, and every model call."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML page instead."),
    as_json: bool = typer.Option(False, "--json", help="The run's events as JSON (schema rlm.trace/1)."),
    no_color: bool = typer.Option(False, "--no-color", help="No colour."),
) -> None:
    """Re-render a saved run from its trace file: failed and interrupted runs show how they ended."""
    from rlmcli.trace.store import find_run, load, summarize

    ws = open_workspace(workspace, need_documents=False)
    path = find_run(ws.root, run)
    events = load(path)
    if as_json:
        summary = summarize(path, events)
        emit_json("rlm.trace/1", {"run_id": path.stem, "status": summary.status, "error": summary.error,
                                  "question": summary.question, "events": [e.to_dict() for e in events]})
        return
    if html is not None:
        from rlmcli.trace.html import write_html

        write_html(events, html, title=f"rlm run {path.stem}")
        say(f"wrote {html}")
        return

    from rlmcli.trace.live import render_events

    render_events(events, stdout_console(no_color=no_color or None), verbose)
