"""The Typer app, its global flags, and what every command shares: error handling, output
helpers, workspace lookup, confirmation before deleting."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

import click
import typer

from rlmcli import __version__
from rlmcli.cli import completion
from rlmcli.errors import ExitStatus, RlmError, UsageError, redact
from rlmcli.records import ExecutorKind

HELP = f"""rlm {__version__}: ask questions about documents far larger than a model's context window.

Exit statuses: 0 ok, 1 error (for ingest: some input failed), 2 usage error,
3 partial answer (a budget was reached), 4 provider error, 130 interrupted.
"""

app = typer.Typer(
    help=HELP, add_completion=True, no_args_is_help=True, rich_markup_mode=None,
    pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
)
_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])

WorkspaceOpt = typer.Option(
    None, "-w", "--workspace", autocompletion=completion.workspaces,
    help="Workspace name (under $RLM_HOME/workspaces), automatic name (auto:KEY, as `rlm workspaces` shows) or "
    "path (anything with a '/'). Default for ingest: an automatic workspace keyed by the inputs' content; for "
    "other commands: the last one an ingest or question used.",
)
JsonOpt = typer.Option(False, "--json", help="Print JSON on stdout (with a schema field).")
ExecutorOpt = typer.Option("local", "--executor", envvar="RLM_EXECUTOR", click_type=click.Choice([e.value for e in ExecutorKind]),  # type: ignore[call-overload]
                           autocompletion=completion.executors,
                           help="Where the work runs: this machine, or Ray (RAY_ADDRESS, else a local Ray; needs rlmcli[ray]).")
ShipOpt = typer.Option(False, "--ship", help="With --executor ray: send workspaces and files through Ray's object store "
                       "instead of a filesystem shared by every machine.")


def examples(*lines: str) -> str:
    """A help epilog of example command lines, kept as written (\\b stops click rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def say(line: str) -> None:
    sys.stderr.write(line + "\n")


def fail(message: str, status: ExitStatus) -> None:
    line = f"rlm: error: {redact(message)}"
    if sys.stderr.isatty():  # a terminal wraps mid-word: break at spaces instead
        import os
        import textwrap

        try:
            columns = os.get_terminal_size(sys.stderr.fileno()).columns
        except (OSError, ValueError):
            columns = 80
        line = textwrap.fill(line, max(40, columns), subsequent_indent="  ",
                             break_long_words=False, break_on_hyphens=False)
    sys.stderr.write(line + "\n")
    raise typer.Exit(int(status))


def emit_json(schema: str, payload: dict[str, Any]) -> None:
    typer.echo(json.dumps({"schema": schema, **payload}, ensure_ascii=False, indent=1, default=str))


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and an exit status (a traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RlmError as exc:
            if _state["debug"]:
                raise
            if exc.status == ExitStatus.INTERRUPTED:
                sys.stderr.write(f"rlm: interrupted: {exc}\n")
                raise typer.Exit(int(exc.status)) from None
            fail(str(exc), exc.status)
        except KeyboardInterrupt:
            sys.stderr.write("rlm: interrupted\n")
            raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None
        except BrokenPipeError:  # `rlm ls | head -1`: the reader left, which is not an error
            _stdout_to_devnull()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]


def _stdout_to_devnull() -> None:
    """What is still buffered for a reader that left goes nowhere, so the exit flush cannot fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"rlm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors (and name the log file of a Ray run)."),
    version: Optional[bool] = typer.Option(None, "--version", "-V", callback=_print_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    _state["debug"] = debug
    if debug:
        from rlmcli import cluster

        cluster.SHOW_LOG = True  # a Ray run names its log file


def open_workspace(spec: Optional[str], need_documents: bool = True, announce: bool = False) -> Any:
    """-w's workspace, else the last used (named on stderr with `announce`); one clear line when
    there is none, it is empty, or -w misspells a name (with the close ones)."""
    from rlmcli.errors import WorkspaceError
    from rlmcli.workspace.ingest import workspace_path
    from rlmcli.workspace.registry import most_recent
    from rlmcli.workspace.store import Workspace

    if spec is None:
        ws = most_recent()
        if announce:
            say(f"rlm: asking the workspace used last, {workspace_label(ws.root)} (-w names another)")
    else:
        path = workspace_path(spec)
        if "/" not in spec and not spec.startswith("auto:") and not Workspace(path).exists():
            raise WorkspaceError(f"no workspace named {spec!r}{close_workspaces(spec)} (`rlm workspaces` lists them; "
                                 f"`rlm ingest FILE -w {spec}` makes it)")
        ws = Workspace.open(path)
    if need_documents and not ws.documents():
        name = spec or str(ws.root)
        raise WorkspaceError(f"the workspace {name} holds no documents yet: rlm ingest FILE -w {name}")
    return ws


def workspace_label(root: Any) -> str:
    """How `rlm workspaces` names the workspace at `root`."""
    from rlmcli.workspace.registry import list_workspaces

    return next((i.label for i in list_workspaces(with_size=False) if i.path == root), str(root))


def close_workspaces(name: str) -> str:
    """'; did you mean deal?' from the named workspaces, or ''."""
    import difflib

    from rlmcli.config import workspaces_dir

    try:
        names = [p.name for p in workspaces_dir().iterdir() if (p / "manifest.json").is_file()]
    except OSError:
        return ""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def confirm(what: str, yes: bool) -> None:
    """Ask before deleting on a terminal; off a terminal, only --yes deletes."""
    if yes:
        return
    if sys.stdin.isatty() and sys.stderr.isatty():
        if not typer.confirm(f"{what}?", default=False, err=True):
            say("rlm: nothing was deleted")
            raise typer.Exit(int(ExitStatus.ERROR))
        return
    raise UsageError(f"not deleting without confirmation: {what} — pass --yes to do it off a terminal")


def human(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" or n >= 100 else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}T"


def stderr_console(no_color: bool = False) -> Any:
    """The one Rich console for stderr (progress bars, the live tree)."""
    from rich.console import Console

    return Console(stderr=True, no_color=no_color or None, highlight=False)


def stdout_console(**options: Any) -> Any:
    """A Rich console for stdout whose closed pipe is the reader leaving (`rlm ls | head`): exit 0,
    where Rich would exit 1."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console(highlight=False, **options)


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"
    wide: bool = False  # takes what width is left, cut with … rather than wrapped (a question, a path)


def print_listing(columns: list[Column], rows: list[list[str]], plain: list[list[str]] | None = None,
                  total: list[str] | None = None) -> None:
    """A listing on stdout. On a terminal: aligned columns under a header, one line per row (Rich).
    Off one: tab-separated lines without a header, for cut, sort and awk (`plain` gives values
    in a form for scripts: plain numbers, ISO times, full names); `--json` is for everything else."""
    if not sys.stdout.isatty():
        for row in plain if plain is not None else rows:
            typer.echo("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))
        return
    from rich.cells import cell_len
    from rich.table import Table

    console = stdout_console()
    every = [*rows, *([total] if total is not None else [])]
    natural = [max([cell_len(c.header), *(cell_len(r[i]) for r in every)]) for i, c in enumerate(columns)]
    # Narrow columns keep their width; the wide ones take what is left of the line, the first
    # one first, leaving at least 12 for each after it.
    wide = [i for i, c in enumerate(columns) if c.wide]
    spare = console.width - 2 * (len(columns) - 1) - sum(w for i, w in enumerate(natural) if i not in wide)
    widths = list(natural)
    for n, i in enumerate(wide):
        widths[i] = max(12, min(natural[i], spare - 12 * (len(wide) - n - 1)))
        spare -= widths[i]
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for c, width in zip(columns, widths, strict=True):
        table.add_column(c.header, justify=c.justify, no_wrap=True,  # type: ignore[arg-type]
                         overflow="ellipsis", width=width)
    for row in rows:
        table.add_row(*row)
    if total is not None:
        table.add_row(*total, style="bold")
    console.print(table)


def main() -> None:
    app()
