"""`rlm ask`: one question, the answer on stdout, the live trace on stderr."""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import typer

from rlmcli.cli.app import WorkspaceOpt, app, examples, fail, handle_errors, say, stderr_console
from rlmcli.cli.documents import given_workspace, no_workspace_yet, workspace_for
from rlmcli.cli.inputs import parse_inputs
from rlmcli.errors import ExitStatus
from rlmcli.options import run_options


@app.command(context_settings={"allow_interspersed_args": True},
             epilog=examples("rlm ask contract.pdf \"what are the termination clauses?\"",
                             "rlm ask -w deal \"which annex changes the fees?\" --max-cost 0.50",
                             "rlm ask -w deal contract.pdf \"what does clause 6 say?\"   # focus on one document",
                             "rlm ask notes.pdf \"summarise\" --model openai/llama3.1 --api-base http://localhost:11434/v1",
                             "rlm ask contract.pdf \"termination\" --offline",
                             "rlm ask contract.pdf \"fees?\" --json > answer.json",
                             "rlm ask -w deal \"notice and law\" --schema 'notice_days int, governing_law' --json",
                             "rlm ask -w deal \"every party\" --schema-multi 'name, role: buyer, seller, ...'",
                             "rlm ask -w deal -c \"and what notice does each need?\"   # a follow-up"))
@handle_errors
@run_options()
def ask(
    args: list[str] = typer.Argument(..., metavar="[FILE...] QUESTION", help="Files to ask about (or '-' for stdin; with -w, names of its documents to focus on), then the question."),
    workspace: Optional[str] = WorkspaceOpt,
    refresh: bool = typer.Option(False, "--refresh", help="Ask the model again instead of using cached replies (and store the new ones)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print a worst-case cost estimate and exit."),
    offline: bool = typer.Option(False, "--offline", help="No model: print the best passages for the question."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (schema rlm.answer/1) on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the answer."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Full code and outputs in the trace."),
    no_color: bool = typer.Option(False, "--no-color", help="No colour (NO_COLOR is honoured too)."),
    schema: Optional[str] = typer.Option(None, "--schema", help="Answer as a JSON object: a JSON Schema (file or inline JSON) or fields like 'notice_days int, governing_law: the country'."),
    schema_multi: Optional[str] = typer.Option(None, "--schema-multi", help="Like --schema, for a list of such objects (one per clause, party, filing...), as {\"items\": [...]}."),
    cont: bool = typer.Option(False, "-c", "--continue", help="A follow-up: start from the workspace's last run (its questions, answers and what they cited)."),
    cid: Optional[str] = typer.Option(None, "--cid", help="A follow-up to this run (an id from `rlm runs`, or a unique prefix)."),
    *, flags: dict[str, Any],
) -> None:
    """Answer a question about documents: the answer on stdout, the trace on stderr."""
    from rlmcli.errors import RlmError

    try:
        _ask(args, workspace, refresh, dry_run, offline, as_json, quiet, verbose, no_color, flags,
             schema, schema_multi, cont, cid)
    except RlmError as exc:
        if as_json and not dry_run and not offline:  # a script reading stdout gets its one object, saying what failed
            import json

            from rlmcli.ask import failed_record

            typer.echo(json.dumps(failed_record(str(exc)), ensure_ascii=False, indent=1))
        raise


def _ask(args: list[str], workspace: Optional[str], refresh: bool, dry_run: bool, offline: bool, as_json: bool,
         quiet: bool, verbose: bool, no_color: bool, flags: dict[str, Any], schema: Optional[str] = None,
         schema_multi: Optional[str] = None, cont: bool = False, cid: Optional[str] = None) -> None:
    import json

    from rlmcli.ask import model_config
    from rlmcli.config import Settings

    inputs = parse_inputs("ask", args, workspace, given_workspace(workspace))
    question, paths, focus = inputs.question, inputs.paths, inputs.focus
    follow = cont or cid is not None
    if not paths and workspace is None:
        no_workspace_yet()  # before the model's checks: there is nothing to ask about
    shape = None
    if schema is not None or schema_multi is not None:
        from rlmcli.schema import shape_of_flags

        shape = shape_of_flags(schema, schema_multi)
    settings = Settings.resolve(flags)
    if not offline:
        config = model_config(settings)  # no model: a usage error before any work
        if not dry_run:
            from rlmcli.ask import check_prices

            for line in check_prices(settings):  # an unenforceable --max-cost: exit 2 before any work
                say(f"rlm: {line}")
        from rlmcli.engine.providers import uses_fast_path

        if not all(uses_fast_path(m, settings.transport) for m in config.allowed_models):
            from rlmcli.engine.providers.litellm_provider import prewarm

            prewarm()  # litellm's import overlaps ingest and the sandbox start
    ws = workspace_for(paths, workspace, quiet, settings.ocr, announce=not quiet)
    if offline:
        _offline(ws, question, as_json, focus)
        return
    if dry_run:
        from rlmcli.ask import dry_run_estimate

        estimate = dry_run_estimate(ws, settings)
        if as_json:
            typer.echo(json.dumps(estimate, ensure_ascii=False, indent=1))
        else:
            _print_estimate(estimate)
        return
    context, follows = "", None
    if follow:
        from rlmcli.followup import budget_chars, context_text, conversation, previous_run

        last = previous_run(ws.root, cid)
        context, follows = context_text(conversation(ws.root / "runs", last), budget_chars(settings.model or "")), last.stem
    _run_and_print(ws, question, settings, refresh, as_json, quiet, verbose, no_color, focus,
                   shape=shape, context=context, follows=follows)


def _print_estimate(estimate: dict[str, Any]) -> None:
    """The dry run as a table: what each model may be called for, at most, and what that costs."""
    from rich.table import Table

    from rlmcli.cli.app import stdout_console

    def money(value: float | None) -> str:
        return "unknown" if value is None else f"${value:,.4f}"

    def per_million(m: dict[str, Any]) -> str:
        if m["usd_per_million_input"] is None:
            return "unknown"
        return f"${m['usd_per_million_input']:g} / ${m['usd_per_million_output']:g}"

    say("rlm: dry run, nothing sent: the worst case, every allowed call with a full context window")
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for header, justify in (("role", "left"), ("model", "left"), ("calls", "right"), ("tokens per call", "right"),
                            ("$/M in / out", "right"), ("at most", "right")):
        table.add_column(header, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for m in estimate["models"]:
        window = f"{m['prompt_tokens_per_call']:,}" + ("" if m["context_window"] else "*")
        table.add_row(m["role"], m["model"], str(m["calls"]), f"{window} + {m['completion_tokens_per_call']:,}",
                      per_million(m), money(m["worst_case_cost"]))
    total = money(estimate["worst_case_cost"])
    if estimate["capped_by_max_cost"]:
        total += " (--max-cost)"
    table.add_row("total", "", str(sum(m["calls"] for m in estimate["models"])), "", "", total, style="bold")
    console = stdout_console(width=None if sys.stdout.isatty() else 100)
    console.print(table)
    sys.stdout.flush()
    if not all(m["context_window"] for m in estimate["models"]):
        from rlmcli.engine.providers.catalog import ASSUMED_WINDOW

        say(f"* window unknown to litellm's map: {ASSUMED_WINDOW:,} tokens assumed")
    if not estimate["price_known"]:
        say("rlm: a price unknown to litellm's map: the worst case cost is unknown")


def _run_and_print(ws: Any, question: str, settings: Any, refresh: bool, as_json: bool, quiet: bool,
                   verbose: bool, no_color: bool, focus: list[str], *, shape: Any = None, context: str = "",
                   follows: str | None = None) -> None:
    import json

    from rlmcli.answer import sources_text
    from rlmcli.ask import answer_record, run_question
    from rlmcli.engine.budget import dollars
    from rlmcli.engine.events import fanout

    observers: list[Any] = []
    live = None
    if not quiet:
        if sys.stderr.isatty():
            from rlmcli.trace.live import LiveView

            live = LiveView(stderr_console(no_color), verbose)
            observers.append(live)
        elif verbose:
            from rlmcli.trace.plain import PlainView

            observers.append(PlainView(verbose=True))
    try:
        if live is not None:
            live.__enter__()
        result = run_question(settings, ws, question, fanout(*observers) if observers else None,
                              stream=live is not None, refresh=refresh, focus=focus or None, shape=shape,
                              context=context, follows=follows)
    finally:
        if live is not None:
            live.__exit__(None, None, None)
    if as_json:
        typer.echo(json.dumps(answer_record(result), ensure_ascii=False, indent=1))
    elif result.status != "failed":
        typer.echo(json.dumps(result.data, ensure_ascii=False, indent=2) if result.data is not None else result.answer)
    if not quiet and not as_json:
        if result.citations and (live is None or shape is not None):  # a live tree ends with them already
            if shape is not None:
                from rlmcli.schema import field_sources_text

                say(field_sources_text(result.citations, ws))
            else:
                say(sources_text(result.citations, ws))
        for problem in result.schema_errors[:10]:
            say(f"rlm: schema: {problem}")
        if live is None and result.status != "failed":
            u = result.usage
            cost = dollars(u.get("cost"))
            cached = f" ({u['cache_hits']} from the cache)" if u.get("cache_hits") else ""
            retries = u.get("retries") or 0
            cached += f", {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""
            say(f"rlm: {result.status} in {result.iterations} iterations, {u.get('calls', 0)} calls{cached}, "
                f"{u.get('prompt_tokens', 0) + u.get('completion_tokens', 0):,} tokens, {cost}, "
                f"{result.seconds:.1f}s; trace {result.run_id}")
    if result.status == "failed":  # the engine fails a run only on provider errors
        fail(result.error or "the run failed", ExitStatus.PROVIDER)
    if result.limit == "interrupted":
        say("rlm: interrupted; the partial answer above and the trace were saved")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(ExitStatus.INTERRUPTED))  # do not wait for in-flight sub-calls to time out
    if result.status == "partial" and result.limit == "schema":
        say(f"rlm: partial answer: still not valid under the schema after {shape.attempts if shape else 0} "
            "corrections; printed what was valid")
        raise typer.Exit(int(ExitStatus.PARTIAL))
    if result.status == "partial":
        say(f"rlm: partial answer: the {result.limit} budget was reached")
        raise typer.Exit(int(ExitStatus.PARTIAL))


def _offline(ws: Any, question: str, as_json: bool, focus: list[str]) -> None:
    import json

    from rlmcli.search import passages_text, search_workspace

    passages = search_workspace(ws, question, k=5, doc=focus[0] if len(focus) == 1 else None)
    say("offline: no model was used; these are the best-matching passages, not an answer")
    if as_json:
        typer.echo(json.dumps({"schema": "rlm.passages/1", "query": question, "passages": passages}, indent=1))
    else:
        typer.echo(passages_text(passages))
