"""The `rlm` command: parse arguments, call the library, render. Nothing else lives here.

Heavy modules (litellm, pypdfium2, pypdf, docx) are imported inside the commands that need
them, so `rlm --help` stays fast.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from rlmcli import __version__
from rlmcli.errors import ExitStatus, RlmError
from rlmcli.options import run_options

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


def _report_skipped(report: Any, shown: int = 20) -> None:
    for name, why in report.skipped[:shown]:
        sys.stderr.write(f"rlm: note: {name}: {why}\n")
    if len(report.skipped) > shown:
        sys.stderr.write(f"rlm: note: ... and {len(report.skipped) - shown} more skipped\n")


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")


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
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="Ingest what symlinks in directories point to, even outside them."),
    ocr: Optional[str] = typer.Option(None, "--ocr", help="OCR for PDF pages without a usable text layer: auto | always | never. Default: auto."),
) -> None:
    """Ingest documents into a workspace; print the workspace path on stdout."""
    from rlmcli.config import Settings

    settings = Settings.resolve({"ocr": ocr})
    from rlmcli.progress import IngestProgress
    from rlmcli.workspace.ingest import ingest as run_ingest

    # Rich is imported only for a terminal: a pipe or cron gets plain lines and a faster start.
    progress = IngestProgress(_stderr_console()) if sys.stderr.isatty() else None
    try:
        ws, report = run_ingest(
            paths, workspace, progress=progress,
            on_wait=lambda: _say("waiting for another rlm process to finish with this workspace..."),
            follow_symlinks=follow_symlinks, ocr=settings.ocr,
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
    _report_skipped(report)
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
        skipped.append(f"{report.skipped_ignored} ignored (.gitignore, VCS, build and cache directories, symlinked dirs)")
    if report.skipped_empty:
        skipped.append(f"{report.skipped_empty} empty")
    if report.skipped:
        skipped.append(f"{len(report.skipped)} unsafe or special (named above)")
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
    page: int = typer.Option(1, "--page", "-p", min=1, help="Page (1-based)."),
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


@app.command(context_settings={"allow_interspersed_args": True})
@handle_errors
@run_options()
def ask(
    args: list[str] = typer.Argument(..., metavar="[FILE...] QUESTION", help="Files to ask about (or '-' for stdin), then the question."),
    workspace: Optional[str] = WorkspaceOpt,
    refresh: bool = typer.Option(False, "--refresh", help="Ask the model again instead of using cached replies (and store the new ones)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print a worst-case cost estimate and exit."),
    offline: bool = typer.Option(False, "--offline", help="No model: print the best passages for the question."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (schema rlm.answer/1) on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the answer."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Full code and outputs in the trace."),
    no_color: bool = typer.Option(False, "--no-color", help="No colour (NO_COLOR is honoured too)."),
    *, flags: dict[str, Any],
) -> None:
    """Answer a question about documents: the answer on stdout, the trace on stderr."""
    import json

    from rlmcli.ask import model_config
    from rlmcli.config import Settings
    from rlmcli.errors import UsageError

    if not args:
        raise UsageError("ask needs a QUESTION")
    question, files = args[-1], args[:-1]
    if not question.strip():
        raise UsageError("the question is empty")
    if not files and workspace is None:
        raise UsageError("ask needs FILE... or -w WORKSPACE before the question")
    settings = Settings.resolve(flags)
    if not offline:
        config = model_config(settings)  # no model: a usage error before any work
        from rlmcli.engine.providers import uses_fast_path

        if not all(uses_fast_path(m, settings.transport) for m in config.allowed_models):
            from rlmcli.engine.providers.litellm_provider import prewarm

            prewarm()  # litellm's import overlaps ingest and the sandbox start
    ws = _workspace_for(files, workspace, quiet, settings.ocr)
    if offline:
        _offline(ws, question, as_json)
        return
    if dry_run:
        from rlmcli.ask import dry_run_estimate

        typer.echo(json.dumps(dry_run_estimate(ws, settings), indent=1))
        return
    _run_and_print(ws, question, settings, refresh, as_json, quiet, verbose, no_color)


def _run_and_print(ws: Any, question: str, settings: Any, refresh: bool, as_json: bool, quiet: bool,
                   verbose: bool, no_color: bool) -> None:
    import json

    from rlmcli.answer import sources_text
    from rlmcli.ask import answer_record, run_question

    observers: list[Any] = []
    live = None
    if not quiet:
        if sys.stderr.isatty():
            from rlmcli.trace.live import LiveView

            live = LiveView(_stderr_console(no_color), verbose)
            observers.append(live)
        elif verbose:
            from rlmcli.trace.plain import PlainView

            observers.append(PlainView(verbose=True))
    from rlmcli.engine.events import fanout

    try:
        if live is not None:
            live.__enter__()
        result = run_question(settings, ws, question, fanout(*observers) if observers else None,
                              stream=live is not None, refresh=refresh)
    finally:
        if live is not None:
            live.__exit__(None, None, None)
    if as_json:
        typer.echo(json.dumps(answer_record(result), ensure_ascii=False, indent=1))
    elif result.status != "failed":
        typer.echo(result.answer)
    if not quiet and not as_json:
        if result.citations:
            sys.stderr.write(sources_text(result.citations, ws) + "\n")
        if live is None and result.status != "failed":
            u = result.usage
            cost = f"${u['cost']:.4f}" if u.get("cost") is not None else "cost unknown"
            cached = f" ({u['cache_hits']} from the cache)" if u.get("cache_hits") else ""
            sys.stderr.write(f"rlm: {result.status} in {result.iterations} iterations, {u.get('calls', 0)} calls{cached}, "
                             f"{u.get('prompt_tokens', 0) + u.get('completion_tokens', 0):,} tokens, {cost}, "
                             f"{result.seconds:.1f}s; trace {result.run_id}\n")
    if result.status == "failed":  # the engine fails a run only on provider errors
        _fail(result.error or "the run failed", ExitStatus.PROVIDER)
    if result.limit == "interrupted":
        sys.stderr.write("rlm: interrupted; the partial answer above and the trace were saved\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(ExitStatus.INTERRUPTED))  # do not wait for in-flight sub-calls to time out
    if result.status == "partial":
        sys.stderr.write(f"rlm: partial answer: the {result.limit} budget was reached\n")
        raise typer.Exit(int(ExitStatus.PARTIAL))


def _stderr_console(no_color: bool = False) -> Any:
    """The one Rich console for stderr (progress bars, the live tree)."""
    from rich.console import Console

    return Console(stderr=True, no_color=no_color or None, highlight=False)


def _workspace_for(files: list[str], workspace: Optional[str], quiet: bool, ocr: str = "auto") -> Any:
    """Ingest FILEs (reusing the cached workspace), or open -w; say what failed."""
    from rlmcli.workspace.ingest import ingest as run_ingest

    if not files:
        return _open_workspace(workspace)
    ws, report = run_ingest(files, workspace, ocr=ocr)
    for name, problem in report.failed:
        sys.stderr.write(f"rlm: error: {name}: {problem}\n")
    if not quiet:
        for doc, warning in report.warnings:
            sys.stderr.write(f"rlm: warning: {doc}: {warning}\n")
    if not ws.documents():
        raise RlmError("nothing to ask about: no input could be ingested")
    return ws


def _offline(ws: Any, question: str, as_json: bool) -> None:
    import json

    from rlmcli.search import passages_text, search_workspace

    passages = search_workspace(ws, question, k=5)
    sys.stderr.write("offline: no model was used; these are the best-matching passages, not an answer\n")
    if as_json:
        typer.echo(json.dumps({"schema": "rlm.passages/1", "query": question, "passages": passages}, indent=1))
    else:
        typer.echo(passages_text(passages))


@app.command()
@handle_errors
def search(
    args: list[str] = typer.Argument(..., metavar="[FILE...] QUERY", help="Files to search (or -w), then the query."),
    workspace: Optional[str] = WorkspaceOpt,
    k: int = typer.Option(10, "-k", min=1, help="Passages to return."),
    doc: Optional[str] = typer.Option(None, "--doc", help="Only this document."),
    as_json: bool = typer.Option(False, "--json", help="A JSON list of passages (doc, page, line, score, text)."),
) -> None:
    """Search a workspace without any model: ranked passages with citations."""
    import json

    from rlmcli.search import passages_text, search_workspace

    query, files = args[-1], args[:-1]
    ws = _workspace_for(files, workspace, True) if files else _open_workspace(workspace)
    passages = search_workspace(ws, query, k=k, doc=ws.resolve_doc(doc) if doc else None)
    typer.echo(json.dumps(passages, indent=1) if as_json else passages_text(passages))


@app.command()
@handle_errors
def runs(workspace: Optional[str] = WorkspaceOpt) -> None:
    """List the runs saved in a workspace: time, status, cost, duration, question."""
    import time

    from rlmcli.trace.store import list_runs

    ws = _open_workspace(workspace)
    for r in list_runs(ws.root):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
        cost = f"${r.cost:.4f}" if r.cost is not None else "-"
        secs = f"{r.seconds:.1f}s" if r.seconds is not None else "-"
        typer.echo(f"{r.run_id}\t{when}\t{r.status}\t{cost}\t{secs}\t{r.question}")


@app.command()
@handle_errors
def trace(
    run: str = typer.Argument("last", help="Run id (or a unique prefix; 'last' for the newest)."),
    workspace: Optional[str] = WorkspaceOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Full code and outputs."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML page instead."),
    no_color: bool = typer.Option(False, "--no-color", help="No colour."),
) -> None:
    """Re-render a saved run from its trace file."""
    from rlmcli.trace.store import find_run, load

    ws = _open_workspace(workspace)
    path = find_run(ws.root, run)
    events = load(path)
    if html is not None:
        from rlmcli.trace.html import write_html

        write_html(events, html, title=f"rlm run {path.stem}")
        sys.stderr.write(f"wrote {html}\n")
        return
    from rich.console import Console

    from rlmcli.trace.live import render_events

    render_events(events, Console(no_color=no_color or None, highlight=False), verbose)


@app.command(context_settings={"allow_interspersed_args": True})
@handle_errors
@run_options(rename={"max_cost": (("--job-max-cost",), "US dollars per job (a job line's max_cost overrides).")},
             extra_help={"timeout": " (Per job.)", "concurrency": " (Across ALL jobs together.)"})
def batch(
    args: list[str] = typer.Argument(None, metavar="[JOBS.jsonl | FILE...]", help="A JSONL job file, or with --questions the files to ask about."),
    output: Path = typer.Option(..., "-o", "--output", help="Results JSONL: appended as jobs finish; reused to resume."),
    questions: Optional[Path] = typer.Option(None, "--questions", help="One question per line, each asked over FILE..."),
    jobs_at_once: int = typer.Option(4, "-j", "--jobs", min=1, help="Jobs running at once."),
    rerun_failed: bool = typer.Option(False, "--rerun-failed", help="Run again the jobs whose last result failed or was skipped."),
    batch_max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0.0, help="Batch-wide US dollars: no new job starts once reached."),
    *, flags: dict[str, Any],
) -> None:
    """Run many questions over many documents; resumable; one JSON line per finished job."""
    from rlmcli.ask import NO_MODEL, model_config
    from rlmcli.batch.driver import Batch, BatchReport
    from rlmcli.batch.jobs import parse_jobs, question_jobs
    from rlmcli.batch.results import ResultsFile, finished_ids
    from rlmcli.config import Settings
    from rlmcli.engine.gateway import preflight
    from rlmcli.errors import UsageError

    settings = Settings.resolve(flags)  # a bad setting stops the batch before any job
    args = args or []
    report = BatchReport()
    if questions is not None:
        if not args:
            raise UsageError("--questions needs FILE... to ask about")
        if not questions.is_file():
            raise UsageError(f"{questions}: no such file")
        jobs = question_jobs(questions, args)
    else:
        if len(args) != 1:
            raise UsageError("give one JOBS.jsonl file, or --questions Q.txt FILE...")
        jobs, errors = parse_jobs(Path(args[0]))
        for e in errors:
            sys.stderr.write(f"rlm: error: {args[0]}:{e.line}: {e.message}\n")
        report.malformed = len(errors)
    if not settings.model and not all("model" in j.overrides for j in jobs):
        raise UsageError(NO_MODEL)
    if settings.model:
        preflight(model_config(settings))  # a missing key: exit 4 now, not a failed row per job
    results = ResultsFile(output)
    done = finished_ids(output, rerun_failed)
    todo = [j for j in jobs if j.id not in done]
    report.already = len(jobs) - len(todo)
    if not jobs and not report.malformed:
        sys.stderr.write(f"rlm batch: no jobs in {questions or args[0]}\n")
    if todo:
        from rlmcli.engine.providers import uses_fast_path

        if settings.model and not uses_fast_path(settings.model, settings.transport):
            from rlmcli.engine.providers.litellm_provider import prewarm

            prewarm()
    bar = _BatchProgress(len(todo)) if sys.stderr.isatty() else None
    runner = Batch(settings, jobs_at_once, batch_max_cost, on_update=bar.update if bar else None)
    try:
        runner.run(todo, results, report)
    finally:
        if bar:
            bar.stop()
    sys.stderr.write(f"rlm batch: {report.done} done, {report.failed} failed, {report.skipped} skipped for budget, "
                     f"{report.already} already in {output}, {report.malformed} malformed lines; "
                     f"${report.cost:.4f}; {report.seconds:.1f}s\n")
    if report.skipped:
        sys.stderr.write(f"rlm batch: the batch budget (--max-cost {batch_max_cost:g}) was reached; "
                         "run again with a higher --max-cost to finish\n")
    if report.failed or report.malformed:
        raise typer.Exit(int(ExitStatus.ERROR))
    if report.skipped:
        raise typer.Exit(int(ExitStatus.PARTIAL))


class _BatchProgress:
    """done / failed / running / cost / ETA on a terminal."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                 console=_stderr_console(), transient=True)
        self.task = self.progress.add_task("batch", total=total, info="")
        self.progress.start()

    def update(self, report: Any, running: int, total: int) -> None:
        self.progress.update(self.task, completed=report.done + report.failed + report.skipped,
                             info=f"{report.failed} failed · {running} running · ${report.cost:.4f}")

    def stop(self) -> None:
        self.progress.stop()


@app.command("models")
@handle_errors
def models_cmd(
    check: bool = typer.Option(False, "--check", help="Send one tiny request to each model: latency or the error."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object (schema rlm.models/1)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Root model (default: $RLM_MODEL or config)."),
    sub_model: Optional[str] = typer.Option(None, "--sub-model", help="Sub-call model."),
    api_base: Optional[str] = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible server."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Variable that holds the API key."),
) -> None:
    """The configured models: provider, key variable (and whether it is set), context window, prices."""
    import json

    from rlmcli.config import Settings
    from rlmcli.models import check as check_model
    from rlmcli.models import describe

    settings = Settings.resolve({"model": model, "sub_model": sub_model, "api_base": api_base,
                                 "api_key_env": api_key_env})
    rows = describe(settings)
    if not rows:
        from rlmcli.ask import NO_MODEL

        raise RlmError(NO_MODEL, ExitStatus.USAGE)
    checks = {}
    if check:
        for m in dict.fromkeys(r["model"] for r in rows):
            checks[m] = check_model(settings, m)
    if as_json:
        typer.echo(json.dumps({"schema": "rlm.models/1", "models": rows, "checks": list(checks.values())}, indent=1))
    else:
        for r in rows:
            key = "no key needed" if r["key_variable"] is None else (
                f"key {r['key_variable']} {'set' if r['key_set'] else 'NOT SET'}")
            window = f"{r['context_window']:,} tokens" if r["context_window"] else "window unknown"
            price = (f"${r['usd_per_million_input']:g}/${r['usd_per_million_output']:g} per M tokens"
                     if r["usd_per_million_input"] is not None else "price unknown")
            typer.echo(f"{r['role']}\t{r['model']}\t{r['provider']} via {r['transport']}\t{key}\t{window}\t{price}")
        for c in checks.values():
            status = f"ok in {c['seconds']:.2f}s" if c["ok"] else f"FAILED ({c['error_kind']}): {c['error']}"
            typer.echo(f"check\t{c['model']}\t{status}")
    if any(not c["ok"] for c in checks.values()):
        raise typer.Exit(int(ExitStatus.PROVIDER))


@app.command("config")
@handle_errors
def config_cmd() -> None:
    """Show the resolved settings and where each came from."""
    from rlmcli.config import Settings, config_path, rlm_home

    typer.echo(f"config file: {config_path()}{'' if config_path().is_file() else ' (not present)'}")
    typer.echo(f"RLM_HOME: {rlm_home()}")
    for name, value, source in Settings.resolve().items():
        typer.echo(f"{name} = {value!r}\t# {source}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
