"""The `rlm` command: parse arguments, call the library, render. Nothing else lives here.

Heavy modules (litellm, pypdfium2, pypdf, docx) are imported inside the commands that need
them, so `rlm --help` stays fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer

from rlmcli import __version__
from rlmcli.errors import ExitStatus, RlmError

HELP = f"""rlm {__version__}: ask questions about documents far larger than a model's context window.

Exit statuses: 0 ok, 1 error (for ingest: some input failed), 2 usage error,
3 partial answer (a budget was reached), 4 provider error, 130 interrupted.
"""

app = typer.Typer(
    help=HELP, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
    pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
)
_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])

WorkspaceOpt = typer.Option(
    None, "-w", "--workspace",
    help="Workspace name (under $RLM_HOME/workspaces) or path (anything with a '/'). "
    "Default for ingest: an automatic workspace keyed by the inputs' content; for other commands: the last used.",
)


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, status: ExitStatus) -> None:
    sys.stderr.write(f"rlm: error: {message}\n")
    raise typer.Exit(int(status))


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and an exit status (a traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RlmError as exc:
            if _state["debug"]:
                raise
            _fail(str(exc), exc.status)
        except KeyboardInterrupt:
            sys.stderr.write("rlm: interrupted\n")
            raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    _state["debug"] = debug
    if version:
        typer.echo(f"rlm {__version__}")
        raise typer.Exit()


def _open_workspace(spec: Optional[str]) -> Any:
    from rlmcli.workspace.ingest import workspace_path
    from rlmcli.workspace.registry import most_recent
    from rlmcli.workspace.store import Workspace

    if spec is None:
        return most_recent()
    return Workspace.open(workspace_path(spec))


def _human(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" or n >= 100 else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}T"


@app.command()
@handle_errors
def ingest(
    paths: list[str] = typer.Argument(..., help="Files, directories, or '-' for stdin."),
    workspace: Optional[str] = WorkspaceOpt,
) -> None:
    """Ingest documents into a workspace; print the workspace path on stdout."""
    from rlmcli.progress import IngestProgress
    from rlmcli.workspace.ingest import ingest as run_ingest

    # Rich is imported only for a terminal: a pipe or cron gets plain lines and a faster start.
    progress = IngestProgress(_stderr()) if sys.stderr.isatty() else None
    try:
        ws, report = run_ingest(
            paths, workspace, progress=progress,
            on_wait=lambda: sys.stderr.write("waiting for another rlm process to finish with this workspace...\n"),
        )
    finally:
        if progress:
            progress.stop()
    for name, problem in report.failed:
        sys.stderr.write(f"rlm: error: {name}: {problem}\n")
    for doc, warning in report.warnings:
        sys.stderr.write(f"rlm: warning: {doc}: {warning}\n")
    for name, doc in report.duplicates:
        sys.stderr.write(f"rlm: note: {name}: same content as {doc}; stored once\n")
    parts = [f"{len(report.added)} new"]
    if report.replaced:
        parts.append(f"{len(report.replaced)} updated")
    if report.unchanged:
        parts.append(f"{len(report.unchanged)} unchanged")
    if report.duplicates:
        parts.append(f"{len(report.duplicates)} duplicate")
    summary = f"ingested {', '.join(parts)} ({report.pages} pages, {_human(report.tokens)} tokens) in {report.seconds:.1f}s"
    skipped = []
    if report.skipped_binary:
        skipped.append(f"{report.skipped_binary} binary")
    if report.skipped_ignored:
        skipped.append(f"{report.skipped_ignored} ignored (.gitignore / VCS / symlinked dirs)")
    if skipped:
        summary += f"; skipped {' and '.join(skipped)}"
    if report.failed:
        summary += f"; {len(report.failed)} failed"
    sys.stderr.write(summary + "\n")
    typer.echo(str(ws.root))
    if report.failed:
        raise typer.Exit(int(ExitStatus.ERROR))


@app.command("ls")
@handle_errors
def ls_cmd(
    workspace: Optional[str] = WorkspaceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the manifest's documents as JSON."),
) -> None:
    """List the documents in a workspace with type, pages, tokens and warnings."""
    import json

    ws = _open_workspace(workspace)
    manifest = ws.manifest()
    docs = manifest["documents"]
    if as_json:
        typer.echo(json.dumps({"workspace": str(ws.root), "documents": docs, "totals": manifest["totals"]}, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    sys.stderr.write(f"workspace: {ws.root}\n")
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col, justify in (("doc", "left"), ("type", "left"), ("pages", "right"), ("tokens", "right"), ("warnings", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for doc, rec in docs.items():
        table.add_row(doc, rec["type"], str(rec["pages"]), f"{rec['tokens']:,}", "; ".join(rec["warnings"]))
    t = manifest["totals"]
    table.add_row(f"{t['documents']} documents", "", str(t["pages"]), f"{t['tokens']:,}", "", style="bold")
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)


@app.command()
@handle_errors
def show(
    doc: str = typer.Argument(..., help="Document id, file name or id prefix."),
    page: int = typer.Option(1, "--page", "-p", help="Page (1-based)."),
    workspace: Optional[str] = WorkspaceOpt,
) -> None:
    """Print one page of a document."""
    ws = _open_workspace(workspace)
    doc_id = ws.resolve_doc(doc)
    text = ws.read_page(doc_id, page)
    sys.stderr.write(f"{doc_id} p.{page}/{ws.documents()[doc_id]['pages']}\n")
    sys.stdout.write(text)


@app.command()
@handle_errors
def rm(
    docs: list[str] = typer.Argument(..., help="Documents to remove."),
    workspace: Optional[str] = WorkspaceOpt,
) -> None:
    """Remove documents from a workspace."""
    ws = _open_workspace(workspace)
    ids = [ws.resolve_doc(d) for d in docs]
    with ws.writer() as writer:
        for doc_id in ids:
            if doc_id in writer.documents:
                writer.remove(doc_id)
    sys.stderr.write(f"removed {', '.join(ids)} from {ws.root}\n")


@app.command()
@handle_errors
def workspaces(
    prune: Optional[float] = typer.Option(None, "--prune", metavar="DAYS", help="Delete automatic workspaces unused for DAYS days."),
) -> None:
    """List workspaces with documents, size and last use."""
    import time

    from rlmcli.workspace.registry import list_workspaces
    from rlmcli.workspace.registry import prune as prune_workspaces

    if prune is not None:
        removed = prune_workspaces(prune)
        freed = sum(i.size for i in removed)
        sys.stderr.write(f"pruned {len(removed)} automatic workspaces ({_human(freed)}B freed)\n")
    now = time.time()
    for info in list_workspaces():
        age = now - info.last_used
        when = f"{age / 86400:.0f}d ago" if age >= 86400 else f"{age / 3600:.0f}h ago" if age >= 3600 else "just now" if age < 60 else f"{age / 60:.0f}m ago"
        typer.echo(f"{info.name}\t{info.documents} docs\t{_human(info.tokens)} tokens\t{_human(info.size)}B\t{when}\t{info.path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
