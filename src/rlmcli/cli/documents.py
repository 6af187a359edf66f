"""Documents in a workspace: ingest, ls, show, rm, search."""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from rlmcli.cli import completion
from rlmcli.cli.app import (
    Column,
    ExecutorOpt,
    JsonOpt,
    ShipOpt,
    WorkspaceOpt,
    app,
    confirm,
    emit_json,
    examples,
    handle_errors,
    human,
    open_workspace,
    print_listing,
    say,
    stderr_console,
)
from rlmcli.errors import ExitStatus, RlmError, UsageError


def report_ingest(report: Any, quiet: bool = False) -> None:
    """Every failure, warning, duplicate and skip of an ingest, one line each, on stderr."""
    for name, problem in report.failed:
        say(f"rlm: error: {name}: {problem}")
    if quiet:
        return
    for doc, warning in report.warnings:
        say(f"rlm: warning: {doc}: {warning}")
    for doc, note in report.notes:
        say(f"rlm: note: {doc}: {note}")
    for name, doc in report.duplicates:
        say(f"rlm: note: {name}: same content as {doc}; stored once")
    for name, why in report.unreadable:  # every one: each is a file the user may have wanted
        say(f"rlm: note: {name}: skipped, unreadable: {why}")
    shown = 20
    for name, why in report.skipped[:shown]:
        say(f"rlm: note: {name}: {why}")
    if len(report.skipped) > shown:
        say(f"rlm: note: ... and {len(report.skipped) - shown} more skipped")


def summary(report: Any) -> str:
    counts = [(len(report.replaced), "updated"), (len(report.unchanged), "unchanged"),
              (len(report.duplicates), "duplicate")]
    parts = [f"{len(report.added)} new"] + [f"{n} {what}" for n, what in counts if n]
    line = f"ingested {', '.join(parts)} ({report.pages} pages, {human(report.tokens)} tokens) in {report.seconds:.1f}s"
    skips = [(report.skipped_binary, "binary"),
             (report.skipped_ignored, "ignored (.gitignore, VCS, build and cache directories, symlinked dirs)"),
             (report.skipped_empty, "empty"), (len(report.skipped), "unsafe or special (named above)"),
             (len(report.unreadable), "unreadable (named above)")]
    skipped = [f"{n} {what}" for n, what in skips if n]
    if skipped:
        line += f"; skipped {', '.join(skipped[:-1]) + ' and ' if len(skipped) > 1 else ''}{skipped[-1]}"
    if report.failed:
        line += f"; {len(report.failed)} failed"
    return line


@app.command(epilog=examples("rlm ingest contract.pdf annex.docx -w deal", "rlm ingest ~/src/myrepo -w repo",
                             "rlm ingest /srv/reports -w reports --strict   # cron: exit 1 if any file fails",
                             "cat notes.txt | rlm ingest - -w deal", "rlm ingest scans/ -w deal --ocr always",
                             "RAY_ADDRESS=head:6379 rlm ingest /shared/filings -w filings --executor ray"))
@handle_errors
def ingest(
    paths: list[str] = typer.Argument(..., metavar="PATH...", help="Files, directories, or '-' for stdin."),
    workspace: Optional[str] = WorkspaceOpt,
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="Ingest what symlinks in directories point to, even outside them."),
    ocr: Optional[str] = typer.Option(None, "--ocr", help="OCR for PDF pages without a usable text layer: auto | always | never. Default: auto.",
                                      autocompletion=completion.ocr_modes),
    executor: str = ExecutorOpt,
    ship: bool = ShipOpt,
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any file fails, also one found in a folder "
                                "(encrypted, corrupt), which is otherwise listed as skipped (for cron jobs)."),
) -> None:
    """Ingest documents into a workspace; print the workspace path on stdout.

    A file named here that cannot be ingested makes the exit status 1; one found by walking a
    folder (an encrypted test fixture in a code tree) is listed as skipped and does not, unless
    --strict."""
    from rlmcli.errors import Interrupted

    try:  # Ctrl-C before the writer opened (imports, discovery) has changed nothing; the writer's own says what it kept
        from rlmcli.config import Settings
        from rlmcli.progress import IngestProgress
        from rlmcli.records import ExecutorKind
        from rlmcli.workspace.ingest import ingest as run_ingest

        settings = Settings.resolve({"ocr": ocr})
        # Rich is imported only for a terminal: a pipe or cron gets plain lines and a faster start.
        progress = IngestProgress(stderr_console()) if sys.stderr.isatty() else None
        try:
            ws, report = run_ingest(
                paths, workspace, progress=progress,
                on_wait=lambda: say("waiting for another rlm process to finish with this workspace..."),
                follow_symlinks=follow_symlinks, ocr=settings.ocr, executor=ExecutorKind(executor), ship=ship,
            )
        finally:
            if progress:
                progress.stop()
    except KeyboardInterrupt:
        raise Interrupted("nothing was ingested") from None
    report_ingest(report)
    say(summary(report))
    if ws.exists():  # an ingest that added nothing to a new workspace leaves none behind
        typer.echo(str(ws.root))
    if report.failed or (strict and report.unreadable):
        raise typer.Exit(int(ExitStatus.ERROR))


@app.command("ls", epilog=examples("rlm ls -w deal", "rlm ls -w deal --json",
                                   "rlm ls -w deal | sort -t$'\\t' -k4 -n   # off a terminal: tab-separated, no header"))
@handle_errors
def ls_cmd(workspace: Optional[str] = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """List the documents in a workspace with type, pages, tokens and warnings. On a terminal,
    aligned columns with a header and totals; in a pipe, tab-separated lines without them."""
    ws = open_workspace(workspace, need_documents=False)
    manifest = ws.manifest()
    docs = manifest["documents"]
    if as_json:
        emit_json("rlm.documents/1", {"workspace": str(ws.root), "documents": docs, "totals": manifest["totals"]})
        return
    say(f"workspace: {ws.root}")
    if not docs:
        say("no documents yet: rlm ingest FILE -w " + (workspace or str(ws.root)))
        return
    rows = [[doc, rec["type"], str(rec["pages"]), f"{rec['tokens']:,}", "; ".join(rec["warnings"])] for doc, rec in docs.items()]
    plain = [[doc, rec["type"], str(rec["pages"]), str(rec["tokens"]), "; ".join(rec["warnings"])] for doc, rec in docs.items()]
    t = manifest["totals"]
    print_listing([Column("doc", wide=True), Column("type"), Column("pages", "right"), Column("tokens", "right"),
                   Column("warnings", wide=True)], rows, plain,
                  total=[f"{t['documents']} documents", "", str(t["pages"]), f"{t['tokens']:,}", ""])


@app.command(epilog=examples("rlm show contract.pdf --page 12 -w deal", "rlm show \"My Notes (v2)\" -w deal"))
@handle_errors
def show(
    doc: str = typer.Argument(..., metavar="DOC", help="Document id, file name (with or without extension), unique prefix, or the path it was ingested from.",
                              autocompletion=completion.documents),
    page: int = typer.Option(1, "--page", "-p", min=1, help="Page (1-based)."),
    workspace: Optional[str] = WorkspaceOpt,
) -> None:
    """Print one page of a document."""
    ws = open_workspace(workspace)
    doc_id = ws.resolve_doc(doc)
    text = ws.read_page(doc_id, page)
    say(f"{doc_id} p.{page}/{ws.documents()[doc_id].pages}")
    sys.stdout.write(text if text.endswith("\n") else text + "\n")  # the prompt starts on a line of its own


@app.command(epilog=examples("rlm rm annex.docx -w deal --yes"))
@handle_errors
def rm(
    docs: list[str] = typer.Argument(..., metavar="DOC...", help="Documents to remove.", autocompletion=completion.documents),
    workspace: Optional[str] = WorkspaceOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed off a terminal)."),
) -> None:
    """Remove documents from a workspace (asks first on a terminal)."""
    ws = open_workspace(workspace)
    ids = list(dict.fromkeys(ws.resolve_doc(d) for d in docs))
    records = ws.documents()
    listing = ", ".join(f"{d} ({records[d].pages} pages)" for d in ids)
    confirm(f"remove {listing} from {ws.root}", yes)
    with ws.writer() as writer:
        for doc_id in ids:
            if doc_id in writer.documents:
                writer.remove(doc_id)
    say(f"removed {', '.join(ids)} from {ws.root}")


def given_workspace(workspace: Optional[str]) -> Any:
    """-w's Workspace (which may not exist yet), or None without -w."""
    if workspace is None:
        return None
    from rlmcli.workspace.ingest import workspace_path
    from rlmcli.workspace.store import Workspace

    ws = Workspace(workspace_path(workspace))
    if ws.exists():
        ws.settle()
    return ws


def no_workspace_yet() -> None:
    """A usage error when no workspace has been used yet (ask without FILE or -w)."""
    from rlmcli.errors import WorkspaceError
    from rlmcli.workspace.registry import most_recent_root

    try:
        most_recent_root()
    except WorkspaceError:
        raise UsageError("ask needs FILE... or -w WORKSPACE before the question: no workspace has been used yet") from None


def workspace_for(files: list[str], workspace: Optional[str], quiet: bool, ocr: str = "auto",
                  announce: bool = False) -> Any:
    """Ingest FILEs (reusing the cached workspace), or open -w (else the last used); say what failed."""
    from rlmcli.workspace.ingest import ingest as run_ingest

    if not files:
        if workspace is None:
            no_workspace_yet()
        return open_workspace(workspace, announce=announce)
    ws, report = run_ingest(files, workspace, ocr=ocr)
    report_ingest(report, quiet)
    if not ws.exists() or not ws.documents():
        raise RlmError("nothing to ask about: no input could be ingested")
    return ws


@app.command(epilog=examples("rlm search contract.pdf \"termination notice\"", "rlm search \"data retention\" -w deal -k 5",
                             "rlm search \"fees\" -w deal --doc contract.pdf --json",
                             "rlm search \"net income\" -w filings --doc 'contoso-*2023*'",
                             "rlm search \"Contoso 2023 annual report\" -w filings --docs"))
@handle_errors
def search(
    args: list[str] = typer.Argument(..., metavar="[FILE...] QUERY", help="Files to search (or -w), then the query."),
    workspace: Optional[str] = WorkspaceOpt,
    k: int = typer.Option(10, "-k", min=1, help="Passages (or documents) to return."),
    doc: Optional[list[str]] = typer.Option(None, "--doc", help="Only these documents: a name or a glob ('r-*.pdf'); repeatable.",
                                            autocompletion=completion.documents),
    rank_docs: bool = typer.Option(False, "--docs", help="Rank documents instead of passages: by how the query names them (title, company, form, fiscal year), then by their passages."),
    as_json: bool = typer.Option(False, "--json", help="JSON: passages (schema rlm.passages/1) or, with --docs, documents (rlm.doclist/1)."),
) -> None:
    """Search a workspace without any model: ranked passages with citations, or ranked documents."""
    from rlmcli.cli.inputs import parse_inputs
    from rlmcli.search import documents_text, passages_text, rank_documents, search_workspace

    inputs = parse_inputs("search", args, workspace, given_workspace(workspace))
    query, paths, focus = inputs.question, inputs.paths, inputs.focus
    ws = workspace_for(paths, workspace, True) if paths else open_workspace(workspace)
    if rank_docs:
        found = rank_documents(ws, query, k=k)
        if as_json:
            emit_json("rlm.doclist/1", {"query": query, "workspace": str(ws.root), "documents": found})
        else:
            typer.echo(documents_text(found))
        return
    only = list(doc) if doc else (focus or None)
    passages = search_workspace(ws, query, k=k, doc=only)
    if as_json:
        emit_json("rlm.passages/1", {"query": query, "workspace": str(ws.root), "passages": passages})
    else:
        typer.echo(passages_text(passages))
