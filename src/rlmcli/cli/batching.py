"""`rlm batch`: many questions over many documents, resumable, for cron."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click
import typer

from rlmcli.cli.app import ExecutorOpt, ShipOpt, app, examples, handle_errors, say, stderr_console
from rlmcli.errors import ExitStatus
from rlmcli.options import run_options
from rlmcli.records import ExecutorKind, RunStatus

if TYPE_CHECKING:
    from rlmcli.batch.driver import BatchReport
    from rlmcli.batch.jobs import Job
    from rlmcli.batch.results import ResultsFile
    from rlmcli.config import Settings


@app.command(context_settings={"allow_interspersed_args": True},
             epilog=examples("rlm batch jobs.jsonl -o results.jsonl -j 8 --max-cost 5",
                             "rlm batch --questions questions.txt contract.pdf annex.docx -o results.jsonl",
                             "rlm batch jobs.jsonl -o results.jsonl --rerun-failed",
                             "rlm batch --questions q.txt contracts/*.pdf --each --schema 'notice_days int, governing_law' -o r.jsonl --format csv > table.csv",
                             "RAY_ADDRESS=head:6379 rlm batch jobs.jsonl -o results.jsonl --executor ray -j 64"))
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
    executor: str = ExecutorOpt,
    ship: bool = ShipOpt,
    each: bool = typer.Option(False, "--each", help="With --questions: ask each question of each FILE alone (one job per file), not of all FILEs together."),
    schema: Optional[str] = typer.Option(None, "--schema", help="Every answer as a JSON object: a JSON Schema (file or inline JSON) or fields like 'notice_days int, governing_law'."),
    schema_multi: Optional[str] = typer.Option(None, "--schema-multi", help="Like --schema, for a list of such objects per job ({\"items\": [...]})."),
    out_format: Optional[str] = typer.Option(None, "--format", click_type=click.Choice(["csv", "jsonl"]),  # type: ignore[call-overload]
                                             help="When the batch ends, print every row of the results file (resumed ones too) on stdout: csv (one column per schema field) or jsonl."),
    *, flags: dict[str, Any],
) -> None:
    """Run many questions over many documents; resumable; one JSON line per finished job."""
    from rlmcli.ask import NO_MODEL, model_config
    from rlmcli.batch.driver import BatchReport
    from rlmcli.batch.jobs import parse_jobs
    from rlmcli.batch.results import ResultsFile, finished_ids, latest_rows
    from rlmcli.config import Settings
    from rlmcli.engine.gateway import preflight
    from rlmcli.errors import UsageError

    settings = Settings.resolve(flags)  # a bad setting stops the batch before any job
    args = args or []
    report = BatchReport()
    source = str(questions) if questions is not None else (args[0] if len(args) == 1 else "")
    shape = None
    if schema is not None or schema_multi is not None:
        from rlmcli.schema import shape_of_flags

        shape = shape_of_flags(schema, schema_multi)
    if each and questions is None:
        raise UsageError("--each goes with --questions Q.txt FILE...")
    if questions is not None:
        jobs, errors = _question_jobs(questions, args, each)
    else:
        if len(args) != 1:
            raise UsageError("give one JOBS.jsonl file, or --questions Q.txt FILE...")
        jobs, errors = parse_jobs(Path(args[0]))
    for e in errors:
        say(f"rlm: error: {source}:{e.line}: {e.message}")
    report.malformed = len(errors)
    if not settings.model and not all("model" in j.overrides for j in jobs):
        raise UsageError(NO_MODEL)
    if settings.model:
        from rlmcli.ask import check_prices

        for line in check_prices(settings, batch_max_cost, "--job-max-cost"):  # an unenforceable --max-cost: exit 2 now
            say(f"rlm: {line}")
        preflight(model_config(settings))  # a missing key: exit 4 now, not a failed row per job
    if batch_max_cost is not None:
        _check_job_prices(settings, jobs, batch_max_cost)
    results = ResultsFile(output)  # locked: a second batch on this file stops here
    try:
        if results.repaired:
            say(f"rlm batch: removed a cut last line ({results.repaired} bytes) from {output}")
        done = finished_ids(output, rerun_failed, {j.id: j.question for j in jobs})
        todo = [j for j in jobs if j.id not in done]
        report.already = len(jobs) - len(todo)
        _say_missing(source, todo)
        _run(settings, todo, results, report, jobs_at_once, batch_max_cost, executor, ship, shape)
        latest = latest_rows(output)
        report.earlier_failed = sum(1 for j in jobs if j.id in done and latest.get(j.id, {}).get("status") == RunStatus.FAILED)
    finally:
        results.close()
    if out_format is not None and not report.write_error:
        _print_rows(output, jobs, shape, out_format)
    if not jobs and not report.malformed:
        sys.stderr.write(f"rlm batch: no jobs in {source}\n")
    from rlmcli.engine.budget import dollars

    earlier = f" ({report.earlier_failed} of them failed)" if report.earlier_failed else ""
    sys.stderr.write(f"rlm batch: {report.done} done, {report.failed} failed, {report.skipped} skipped for budget, "
                     f"{report.already} already in {output}{earlier}, {report.malformed} malformed lines; "
                     f"{dollars(report.cost if report.cost_known else None)}; {report.seconds:.1f}s\n")
    if report.write_error:
        _say_unwritten(report)
        raise typer.Exit(int(ExitStatus.USAGE))
    if report.skipped:
        sys.stderr.write(f"rlm batch: the batch budget (--max-cost {batch_max_cost:g}) was reached; the skipped jobs "
                         "are recorded as skipped: run the same command again (each run may spend its --max-cost) "
                         "to finish them\n")
    failed = report.failed + report.earlier_failed
    if failed:
        sys.stderr.write(f"rlm batch: {failed} jobs have failed"
                         + (f" ({report.earlier_failed} in earlier runs)" if report.earlier_failed else "")
                         + "; run again with --rerun-failed to retry them\n")
    if failed or report.malformed:
        raise typer.Exit(int(ExitStatus.ERROR))
    if report.skipped:
        raise typer.Exit(int(ExitStatus.PARTIAL))


def _run(settings: Settings, todo: list[Job], results: ResultsFile, report: BatchReport, jobs_at_once: int,
         batch_max_cost: float | None, executor: str, ship: bool, shape: Any = None) -> None:
    from rlmcli.batch.driver import Batch

    if todo:
        from rlmcli.engine.providers import uses_fast_path

        if settings.model and not uses_fast_path(settings.model, settings.transport):
            from rlmcli.engine.providers.litellm_provider import prewarm

            prewarm()
    chosen = None
    if ExecutorKind(executor) is ExecutorKind.RAY and todo:
        from rlmcli.batch.executors_ray import RayExecutor

        chosen = RayExecutor(jobs_at_once, settings.concurrency, ship=ship, max_cost=batch_max_cost)
    bar = _BatchProgress(len(todo)) if sys.stderr.isatty() else None
    runner = Batch(settings, jobs_at_once, batch_max_cost, executor=chosen, on_update=bar.update if bar else None,
                   schema=shape.item_schema if shape else None, schema_multi=bool(shape and shape.is_multi))
    try:
        runner.run(todo, results, report)
    finally:
        if bar:
            bar.stop()


def _say_missing(source: str, jobs: list[Job]) -> None:
    """Files a job line names that are not there: the job fails, or, as its line asks, runs without them."""
    for job in jobs:
        if not job.missing:
            continue
        where = f"{source}:{job.line}: " if job.line else ""
        if job.missing_problem:
            say(f"rlm: error: {where}{job.missing_problem} (job {job.id!r} fails)")
        else:
            say(f"rlm: warning: {where}no such file: {', '.join(job.missing)} (job {job.id!r} runs without it, "
                'as its line says "missing": "skip")')


def _say_unwritten(report: BatchReport) -> None:
    """The results file stopped taking lines: say why, and hand back what finished (stderr lists
    the jobs and their traces; stdout carries the rows, ready to append once there is room)."""
    import json

    say(f"rlm: error: {report.write_error}: the batch stopped; {report.not_started} jobs not started, "
        f"{len(report.unwritten)} finished results not written (below, and on stdout as JSON lines)")
    for row in report.unwritten:
        trace = f", trace {row['trace']}" if row.get("trace") else ""
        say(f"rlm batch: not written: {row['id']} ({row.get('status')}{trace})")
        sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _question_jobs(questions: Path, files: list[str], each: bool) -> tuple[list[Any], list[Any]]:
    """`--questions Q.txt FILE...` (Q.txt may be '-': stdin), with or without --each."""
    from rlmcli.batch.jobs import decode_lines, question_jobs, question_jobs_from
    from rlmcli.errors import UsageError

    if not files:
        raise UsageError("--questions needs FILE... to ask about")
    absent = [a for a in files if a != "-" and not Path(a).exists()]
    if absent:
        raise UsageError(f"no such file: {', '.join(absent)}")
    if str(questions) == "-":
        return question_jobs_from(decode_lines(sys.stdin.buffer.read()), files, each)
    if not questions.is_file():
        raise UsageError(f"{questions}: no such file")
    return question_jobs(questions, files, each)


def _print_rows(output: Path, jobs: list[Any], shape: Any, out_format: str) -> None:
    """Every row of the results file (the newest line per id, resumed ones included) on stdout."""
    import json

    from rlmcli.batch.table import csv_text, latest_rows

    rows = latest_rows(output, [j.id for j in jobs])
    if out_format == "jsonl":
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    documents = {j.id: "; ".join(Path(f).name for f in j.files) if j.files else str(j.workspace) for j in jobs}
    sys.stdout.write(csv_text(rows, shape.fields if shape else [], bool(shape and shape.is_multi), documents))
    sys.stdout.flush()


def _check_job_prices(settings: Any, jobs: list[Any], batch_max_cost: float) -> None:
    """The batch's --max-cost must be enforceable for the models job lines name, too."""
    from rlmcli.ask import price_help, unpriced_models
    from rlmcli.errors import UsageError

    unpriced: dict[str, None] = {}
    for job in jobs:
        chosen = {k: job.overrides[k] for k in ("model", "sub_model") if k in job.overrides}
        if chosen:
            unpriced.update(dict.fromkeys(unpriced_models(settings.override(chosen, f"job {job.id}"))))
    if unpriced:
        raise UsageError(f"--max-cost {batch_max_cost:g} cannot be enforced: no price is known for "
                         f"{', '.join(unpriced)} (named by job lines); {price_help(list(unpriced))}")


class _BatchProgress:
    """done / failed / running / cost / ETA on a terminal."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                 console=stderr_console(), transient=True)
        self.task = self.progress.add_task("batch", total=total, info="")
        self.progress.start()

    def update(self, report: Any, running: int, total: int) -> None:
        from rlmcli.engine.budget import dollars

        self.progress.update(self.task, completed=report.done + report.failed + report.skipped,
                             info=f"{report.failed} failed · {running} running · "
                                  f"{dollars(report.cost if report.cost_known else None)}")

    def stop(self) -> None:
        self.progress.stop()


