"""`rlm workspaces`: every workspace under RLM_HOME; pruning old automatic ones."""

from __future__ import annotations

import time
from typing import Optional

import typer

from rlmcli.cli.app import Column, JsonOpt, app, confirm, emit_json, examples, handle_errors, human, print_listing, say


@app.command(epilog=examples("rlm workspaces", "rlm workspaces --json", "rlm workspaces --prune 30 --yes",
                             "rlm workspaces | cut -f1   # off a terminal: tab-separated, no header"))
@handle_errors
def workspaces(
    prune: Optional[float] = typer.Option(None, "--prune", metavar="DAYS", help="Delete automatic workspaces unused for DAYS days (asks first on a terminal)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed off a terminal)."),
    as_json: bool = JsonOpt,
) -> None:
    """List workspaces, the most recently used first, with documents, size and last use; prune old
    automatic ones. On a terminal, aligned columns with a header (an automatic workspace is named
    by what it holds: auto:f758d4 (contract.pdf +2)); in a pipe, tab-separated lines without one."""
    from rlmcli.errors import UsageError
    from rlmcli.workspace.registry import list_workspaces, prunable, remove

    if prune is not None:
        if prune < 0 or prune != prune:
            raise UsageError(f"--prune takes a number of days (0 or more), not {prune:g}")
        doomed = prunable(prune)
        if doomed:
            listing = ", ".join(f"{i.label} ({human(i.size)}B)" for i in doomed[:10]) + (
                f" and {len(doomed) - 10} more" if len(doomed) > 10 else "")
            confirm(f"delete {len(doomed)} automatic workspace{'s' * (len(doomed) != 1)} unused for {prune:g} days: "
                    f"{listing}", yes)
        removed = remove(doomed)
        say(f"pruned {len(removed)} automatic workspaces ({human(sum(i.size for i in removed))}B freed)"
            + (": " + ", ".join(i.label for i in removed) if removed else ""))
    infos = list_workspaces()
    if as_json:
        emit_json("rlm.workspaces/1", {"workspaces": [
            {"name": i.name, "label": i.label, "path": str(i.path), "auto": i.auto, "documents": i.documents,
             "sources": i.sources, "tokens": i.tokens, "bytes": i.size, "last_used": i.last_used} for i in infos]})
        return
    if not infos:
        say("no workspaces yet: rlm ingest FILE")
        return
    now = time.time()
    rows, plain = [], []
    for info in infos:
        age = now - info.last_used
        when = (f"{age / 86400:.0f}d ago" if age >= 86400 else f"{age / 3600:.0f}h ago" if age >= 3600
                else "just now" if age < 60 else f"{age / 60:.0f}m ago")
        rows.append([info.label, str(info.documents), human(info.tokens), f"{human(info.size)}B", when, str(info.path)])
        plain.append([info.name, str(info.documents), str(info.tokens), str(info.size),
                      time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(info.last_used)), str(info.path),
                      ", ".join(info.sources)])
    print_listing([Column("workspace", wide=True), Column("docs", "right"), Column("tokens", "right"), Column("size", "right"),
                   Column("used"), Column("path", wide=True)], rows, plain)
