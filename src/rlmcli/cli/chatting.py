"""`rlm chat`: an interactive session over a workspace; the library side is rlmcli/chat.py."""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from rlmcli.cli.app import WorkspaceOpt, app, examples, handle_errors, say, stderr_console
from rlmcli.options import run_options
from rlmcli.records import Limit, RunStatus

COMMANDS = {
    "!cost": "calls, tokens and US dollars of this session so far",
    "!vars": "the REPL's variables (they persist between questions)",
    "!trace": "the last question's run again as a tree (!trace -v: every step)",
    "!runs": "the runs of this session, with their ids (for rlm ask --cid)",
    "!help": "this list",
}
HISTORY_LINES = 1000


@app.command(epilog=examples("rlm chat -w deal", "rlm chat contract.pdf annex.docx",
                             "rlm chat -w deal -c            # go on from the last run of the workspace",
                             "printf 'q1\\nq2\\n' | rlm chat -w deal   # questions from a pipe, one per line"))
@handle_errors
@run_options()
def chat(
    files: Optional[list[str]] = typer.Argument(None, metavar="[FILE...]", help="Files to chat about (or use -w)."),
    workspace: Optional[str] = WorkspaceOpt,
    cont: bool = typer.Option(False, "-c", "--continue", help="Start from the workspace's last run (its questions and answers)."),
    cid: Optional[str] = typer.Option(None, "--cid", help="Start from this run (an id from `rlm runs`, or a unique prefix)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Full code and outputs in the trace."),
    no_color: bool = typer.Option(False, "--no-color", help="No colour (NO_COLOR is honoured too)."),
    *, flags: dict[str, Any],
) -> None:
    """Ask questions one after another; the sandbox and its variables persist between them.

    Ctrl-C stops the current question (its partial answer and trace are kept), Ctrl-D leaves.
    Lines starting with ! are commands: !cost, !vars, !trace, !runs, !help."""
    from rlmcli.ask import model_config
    from rlmcli.cli.documents import workspace_for
    from rlmcli.cli.inputs import chat_files
    from rlmcli.config import Settings
    from rlmcli.engine.gateway import preflight

    settings = Settings.resolve(flags)
    preflight(model_config(settings))  # no model or no key: exit 2 or 4 before anything starts
    paths = chat_files(list(files or []))
    ws = workspace_for(paths, workspace, False, settings.ocr)
    earlier = []
    if cont or cid is not None:
        from rlmcli.followup import conversation, previous_run

        earlier = conversation(ws.root / "runs", previous_run(ws.root, cid))
    from rlmcli.chat import ChatSession

    session = ChatSession(settings, ws, earlier)
    interactive = sys.stdin.isatty()
    try:
        if interactive:
            docs = len(ws.documents())
            go_on = f"; going on from {len(earlier)} earlier question(s)" if earlier else ""
            say(f"rlm chat over {ws.root} ({docs} document{'s' if docs != 1 else ''}{go_on}). "
                "Ctrl-C stops a question, Ctrl-D leaves, !help lists commands.")
        _loop(session, interactive, verbose, no_color)
    finally:
        session.close()


def _history() -> Any:
    """Line editing and a history file, on a terminal (readline is absent on some platforms)."""
    try:
        import readline
    except ImportError:
        return None
    from rlmcli.config import rlm_home

    path = rlm_home() / "chat_history"
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(HISTORY_LINES)
    return lambda: _save_history(readline, path)


def _save_history(readline: Any, path: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)
    except OSError:
        pass


def _read(interactive: bool) -> str | None:
    """The next line; None at the end of input (Ctrl-D, or the end of a pipe)."""
    try:
        if interactive:
            if sys.stdout.isatty():
                return input("rlm> ")
            sys.stderr.write("rlm> ")  # answers go to a file: the prompt must not
            sys.stderr.flush()
            return input()
        line = sys.stdin.readline()
        return line if line else None
    except EOFError:
        return None


def _loop(session: Any, interactive: bool, verbose: bool, no_color: bool) -> None:
    save = _history() if interactive else None
    try:
        while True:
            try:
                line = _read(interactive)
            except KeyboardInterrupt:  # at the prompt: a fresh line, like a shell
                sys.stderr.write("\n(Ctrl-D leaves)\n")
                continue
            if line is None:
                if interactive:
                    sys.stderr.write("\n")
                return
            text = line.strip()
            if not text:
                continue
            if text.startswith("!"):
                _command(session, text, no_color)
                continue
            try:
                _question(session, text, verbose, no_color)
            except KeyboardInterrupt:  # outside the engine's own handling: the run was not recorded
                session.settle()
                say("rlm: interrupted")
    finally:
        if save is not None:
            save()


def _question(session: Any, question: str, verbose: bool, no_color: bool) -> None:
    from rlmcli.answer import sources_text

    live = None
    observer: Any = None
    if sys.stderr.isatty():
        from rlmcli.trace.live import LiveView

        live = LiveView(stderr_console(no_color), verbose)
        observer = live
    elif verbose:
        from rlmcli.trace.plain import PlainView

        observer = PlainView(verbose=True)
    restarts = session.repl.restarts
    try:
        if live is not None:
            live.__enter__()
        result = session.ask(question, observer, stream=live is not None)
    finally:
        if live is not None:
            live.__exit__(None, None, None)
    if result.status is not RunStatus.FAILED:
        typer.echo(result.answer)
    if result.citations:
        say(sources_text(result.citations, session.ws))
    if result.status is RunStatus.FAILED:
        say(f"rlm: error: {result.error or 'the run failed'}")
    elif result.limit is Limit.INTERRUPTED:
        say("rlm: interrupted; the partial answer above and the trace were saved")
    elif result.status is RunStatus.PARTIAL:
        say(f"rlm: partial answer: the {result.limit} budget was reached")
    if session.repl.restarts != restarts:
        say("rlm: the sandbox was restarted: the variables built so far are gone")
    if live is None:
        u = result.usage or {}
        cost = f"${u['cost']:.4f}" if u.get("cost") is not None else "cost unknown"
        say(f"rlm: {result.status} in {result.iterations} iterations, {u.get('calls', 0)} calls, {cost}; "
            f"run {result.run_id}")
    sys.stdout.flush()


def _command(session: Any, text: str, no_color: bool) -> None:
    name, _, rest = text.partition(" ")
    if name == "!cost":
        c = session.cost()
        cost = f"${c['cost']:.4f}" if c["cost"] is not None else "cost unknown (a model has no price)"
        say(f"{c['questions']} question(s), {c['calls']} model calls, {c['tokens']:,} tokens, {cost}")
    elif name == "!vars":
        say(session.variables())
    elif name == "!trace":
        path = session.last_trace()
        if path is None:
            say("no question asked yet")
            return
        from rlmcli.trace.live import render_events
        from rlmcli.trace.store import load

        render_events(load(path), stderr_console(no_color), rest.strip() == "-v")
    elif name == "!runs":
        if not session.results:
            say("no question asked yet")
        for r in session.results:
            say(f"{r.run_id}\t{r.status}\t{r.answer[:60]!r}")
    elif name == "!help":
        say("\n".join(f"{k:8} {v}" for k, v in COMMANDS.items()) +
            "\nCtrl-C stops a question (its variables are kept when the cell stops in time); Ctrl-D leaves.")
    else:
        say(f"unknown command {name}: {', '.join(COMMANDS)}")
