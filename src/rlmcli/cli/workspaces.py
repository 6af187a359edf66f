"""`rlm workspaces`: every workspace under RLM_HOME; pruning old automatic ones."""

from __future__ import annotations

import time
from typing import Optional

import typer

from rlmcli.cli.app import JsonOpt, app, confirm, emit_json, examples, handle_errors, human, say


@app.command(epilog=examples("rlm workspaces", "rlm workspaces --json", "rlm workspaces --prune 30 --yes"))
@handle_errors
def workspaces(
    prune: Optional[float] = typer.Option(None, "--prune", metavar="DAYS", help="Delete automatic workspaces unused for DAYS days (asks first on a terminal)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed off a terminal)."),
    as_json: bool = JsonOpt,
) -> None:
    """List workspaces with documents, size and last use; prune old automatic ones."""
    from rlmcli.errors import UsageError
    from rlmcli.workspace.registry import list_workspaces, prunable, remove

    if prune is not None:
        if prune < 0 or prune != prune:
            raise UsageError(f"--prune takes a number of days (0 or more), not {prune:g}")
        doomed = prunable(prune)
        if doomed:
            listing = ", ".join(f"{i.name} ({human(i.size)}B)" for i in doomed[:10]) + (
                f" and {len(doomed) - 10} more" if len(doomed) > 10 else "")
            confirm(f"delete {len(doomed)} automatic workspaces unused for {prune:g} days: {listing}", yes)
        removed = remove(doomed)
        say(f"pruned {len(removed)} automatic workspaces ({human(sum(i.size for i in removed))}B freed)")
    infos = list_workspaces()
    if as_json:
        emit_json("rlm.workspaces/1", {"workspaces": [
            {"name": i.name, "path": str(i.path), "auto": i.auto, "documents": i.documents, "tokens": i.tokens,
             "bytes": i.size, "last_used": i.last_used} for i in infos]})
        return
    if not infos:
        say("no workspaces yet: rlm ingest FILE")
    now = time.time()
    for info in infos:
        age = now - info.last_used
        when = f"{age / 86400:.0f}d ago" if age >= 86400 else f"{age / 3600:.0f}h ago" if age >= 3600 else "just now" if age < 60 else f"{age / 60:.0f}m ago"
        typer.echo(f"{info.name}\t{info.documents} docs\t{human(info.tokens)} tokens\t{human(info.size)}B\t{when}\t{info.path}")
