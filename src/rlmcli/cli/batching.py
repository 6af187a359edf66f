"""`rlm batch`: many questions over many documents, resumable, for cron."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from rlmcli.cli.app import ExecutorOpt, ShipOpt, app, examples, handle_errors, say, stderr_console
from rlmcli.errors import ExitStatus
from rlmcli.options import run_options


@app.command(context_settings={"allow_interspersed_args": True},
             epilog=examples("rlm batch jobs.jsonl -o results.jsonl -j 8 --max-cost 5",
                             "rlm batch --questions questions.txt contract.pdf annex.docx -o results.jsonl",
                             "rlm batch jobs.jsonl -o results.jsonl --rerun-failed",
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
            say(f"rlm: error: {args[0]}:{e.line}: {e.message}")
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
    results = ResultsFile(output)
    done = finished_ids(output, rerun_failed, {j.id: j.question for j in jobs})
    todo = [j for j in jobs if j.id not in done]
    report.already = len(jobs) - len(todo)
    if not jobs and not report.malformed:
        sys.stderr.write(f"rlm batch: no jobs in {questions or args[0]}\n")
    if todo:
        from rlmcli.engine.providers import uses_fast_path

        if settings.model and not uses_fast_path(settings.model, settings.transport):
            from rlmcli.engine.providers.litellm_provider import prewarm

            prewarm()
    chosen = None
    if executor == "ray" and todo:
        from rlmcli.batch.executors_ray import RayExecutor

        chosen = RayExecutor(jobs_at_once, settings.concurrency, ship=ship, max_cost=batch_max_cost)
    bar = _BatchProgress(len(todo)) if sys.stderr.isatty() else None
    runner = Batch(settings, jobs_at_once, batch_max_cost, executor=chosen, on_update=bar.update if bar else None)
    try:
        runner.run(todo, results, report)
    finally:
        if bar:
            bar.stop()
    from rlmcli.engine.budget import dollars

    sys.stderr.write(f"rlm batch: {report.done} done, {report.failed} failed, {report.skipped} skipped for budget, "
                     f"{report.already} already in {output}, {report.malformed} malformed lines; "
                     f"{dollars(report.cost if report.cost_known else None)}; {report.seconds:.1f}s\n")
    if report.skipped:
        sys.stderr.write(f"rlm batch: the batch budget (--max-cost {batch_max_cost:g}) was reached; the skipped jobs "
                         "are recorded as skipped: run the same command again (each run may spend its --max-cost) "
                         "to finish them\n")
    if report.failed or report.malformed:
        raise typer.Exit(int(ExitStatus.ERROR))
    if report.skipped:
        raise typer.Exit(int(ExitStatus.PARTIAL))


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


