"""The Typer app, its global flags, and what every command shares: error handling, output
helpers, workspace lookup, confirmation before deleting."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, Optional, TypeVar

import click
import typer

from rlmcli import __version__
from rlmcli.errors import ExitStatus, RlmError, UsageError

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
    None, "-w", "--workspace",
    help="Workspace name (under $RLM_HOME/workspaces), automatic name (auto:KEY, as `rlm workspaces` shows) or "
    "path (anything with a '/'). Default for ingest: an automatic workspace keyed by the inputs' content; for "
    "other commands: the last one an ingest or question used.",
)
JsonOpt = typer.Option(False, "--json", help="Print JSON on stdout (with a schema field).")
ExecutorOpt = typer.Option("local", "--executor", envvar="RLM_EXECUTOR", click_type=click.Choice(["local", "ray"]),  # type: ignore[call-overload]
                           help="Where the work runs: this machine, or Ray (RAY_ADDRESS, else a local Ray; needs rlmcli[ray]).")
ShipOpt = typer.Option(False, "--ship", help="With --executor ray: send workspaces and files through Ray's object store "
                       "instead of a filesystem shared by every machine.")


def examples(*lines: str) -> str:
    """A help epilog of example command lines, kept as written (\\b stops click rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def say(line: str) -> None:
    sys.stderr.write(line + "\n")


def fail(message: str, status: ExitStatus) -> None:
    sys.stderr.write(f"rlm: error: {message}\n")
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

    return wrapper  # type: ignore[return-value]


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


def open_workspace(spec: Optional[str], need_documents: bool = True) -> Any:
    """-w's workspace, else the last used; one clear line when there is none or it is empty."""
    from rlmcli.errors import WorkspaceError
    from rlmcli.workspace.ingest import workspace_path
    from rlmcli.workspace.registry import most_recent
    from rlmcli.workspace.store import Workspace

    ws = most_recent() if spec is None else Workspace.open(workspace_path(spec))
    if need_documents and not ws.documents():
        name = spec or str(ws.root)
        raise WorkspaceError(f"the workspace {name} holds no documents yet: rlm ingest FILE -w {name}")
    return ws


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


def main() -> None:
    app()
