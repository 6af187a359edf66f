"""The batch driver: ingest shared documents once, hand Work to an executor, cap the cost,
append each result as it arrives. Only the driver writes the results file, so resuming works the
same whatever the executor. When the results file stops taking lines (a full disk), no new job
starts, the running ones finish, and what they found is handed back in the report, not dropped."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlmcli.batch.executors import Executor, LocalExecutor
from rlmcli.batch.jobs import Job
from rlmcli.batch.results import BATCH_LIMIT, ResultsFile, ResultsWriteError
from rlmcli.batch.work import Work, register_spend
from rlmcli.config import Settings
from rlmcli.engine.budget import SharedSpend
from rlmcli.errors import UsageError
from rlmcli.records import RunStatus


@dataclass
class BatchReport:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    already: int = 0
    malformed: int = 0
    cost: float = 0.0
    cost_known: bool = True  # False once a job's cost is unknown (a model without a price)
    seconds: float = 0.0
    write_error: str | None = None  # the results file stopped taking lines: why
    unwritten: list[dict[str, Any]] = field(default_factory=list)  # finished rows it could not take
    not_started: int = 0  # jobs not started once it had failed
    earlier_failed: int = 0  # failed rows from earlier runs, still the newest for their job (set by the CLI)


STOPPED = "not started: the results file cannot be written"


class Batch:
    def __init__(self, settings: Settings, jobs_at_once: int = 4, max_cost: float | None = None,
                 executor: Executor | None = None,
                 on_update: Callable[[BatchReport, int, int], None] | None = None,
                 schema: dict[str, Any] | None = None, schema_multi: bool = False) -> None:
        self.settings = settings
        self.max_cost = max_cost
        self.executor = executor or LocalExecutor(jobs_at_once)
        self.on_update = on_update
        self.schema, self.schema_multi = schema, schema_multi  # every job's answer must meet it
        self.batch_id = os.urandom(6).hex()
        self.spend = SharedSpend(max_cost)  # jobs on this machine book each request's worst case here
        self.lock = threading.Lock()
        self.spent = 0.0  # finished jobs
        self.running = 0
        self.workspaces: dict[tuple[str, ...], Any] = {}  # inputs -> Workspace, or the Exception
        self.ingest_failed: dict[tuple[str, ...], list[tuple[str, str]]] = {}  # inputs -> (file, why) not ingested
        self.write_error: str | None = None

    def _cost_so_far(self) -> float:
        with self.lock:
            spent = self.spent
        return spent + self.executor.live_cost(self.batch_id)

    def _may_start(self) -> str | None:
        if self.write_error is not None:
            return STOPPED
        left = self.spend.left()
        if self.max_cost is not None and (self._cost_so_far() >= self.max_cost or (left is not None and left <= 0)):
            return f"batch budget reached: ${self._cost_so_far():.4f} of --max-cost ${self.max_cost:g}; job not started"
        with self.lock:
            self.running += 1
        return None

    def prepare(self, jobs: list[Job]) -> dict[str, str]:
        """Ingest each distinct set of files once (before any job starts); errors by job id."""
        from rlmcli.workspace.ingest import ingest, workspace_path
        from rlmcli.workspace.store import Workspace

        for job in jobs:
            if job.missing_problem or job.inputs_key in self.workspaces:
                continue
            try:
                if job.files:
                    ws, report = ingest(job.files, job.workspace, ocr=self.settings.ocr)
                    self.ingest_failed[job.inputs_key] = list(report.failed)
                    if not (report.added or report.replaced or report.unchanged or report.duplicates):
                        # Nothing went in (the workspace was removed again): the files' own reasons.
                        why = "; ".join(f"{n}: {p}" for n, p in [*report.failed, *report.skipped])
                        raise UsageError(f"nothing ingested into {ws.root}: {why or 'no readable file'}")
                else:
                    ws = Workspace.open(workspace_path(job.workspace or ""))
                self.workspaces[job.inputs_key] = ws
            except Exception as exc:  # noqa: BLE001 - this job (and its siblings) fail alone
                self.workspaces[job.inputs_key] = exc
        return {job.id: problem for job in jobs if (problem := self._problem(job))}

    def _problem(self, job: Job) -> str | None:
        """Why this job cannot run, or None. It never runs over part of its files unless its line
        says "missing": "skip"."""
        if job.missing_problem:
            return job.missing_problem
        got = self.workspaces[job.inputs_key]
        if isinstance(got, OSError):
            return f"{got.strerror or got}" + (f" ({got.filename})" if got.filename else "")
        if isinstance(got, Exception):
            return str(got) or type(got).__name__
        failed = self.ingest_failed.get(job.inputs_key)
        if failed and job.on_missing != "skip":
            hint = ' (with "missing": "skip" on its line the job runs over the rest)' if job.line else ""
            return "could not ingest " + "; ".join(f"{n}: {p}" for n, p in failed) + hint
        return None

    def _skipped_files(self, job: Job) -> list[dict[str, str]]:
        left_out = [(f, "no such file") for f in job.missing] + self.ingest_failed.get(job.inputs_key, [])
        return [{"file": f, "reason": why} for f, why in left_out] if job.on_missing == "skip" else []

    def _record(self, results: ResultsFile, row: dict[str, Any], report: BatchReport) -> None:
        """Append a row; when the file refuses it, keep it in the report and stop starting jobs."""
        try:
            results.append(row)
        except ResultsWriteError as exc:
            with self.lock:
                self.write_error = self.write_error or str(exc)
            report.write_error = self.write_error
            report.unwritten.append(row)

    def run(self, jobs: list[Job], results: ResultsFile, report: BatchReport) -> BatchReport:
        started = time.monotonic()
        problems = self.prepare(jobs)
        works = []
        settings = self.settings.to_dict()
        for job in jobs:
            if job.id in problems:
                self._record(results, {"id": job.id, "question": job.question, "status": RunStatus.FAILED.value,
                                       "error": problems[job.id]}, report)
                report.failed += 1
            else:
                root = str(self.workspaces[job.inputs_key].root)
                works.append(Work(job, settings, root, limiter=f"batch-{self.batch_id}", batch_id=self.batch_id,
                                  schema=self.schema, schema_multi=self.schema_multi))
        total = len(jobs)
        register_spend(self.batch_id, self.spend)
        try:
            for work, row in self.executor.run(works, self._may_start):
                status = row.get("status")
                if status == RunStatus.SKIPPED and row.get("error") == STOPPED:
                    report.not_started += 1  # not written either: a re-run runs it
                    continue
                row = {"id": work.job.id, "question": work.job.question, **row}
                if self._skipped_files(work.job):
                    row["files_skipped"] = self._skipped_files(work.job)
                self._record(results, row, report)
                usage = row.get("usage") or {}
                if usage.get("calls") and usage.get("cost") is None:
                    report.cost_known = False
                with self.lock:
                    if status != RunStatus.SKIPPED or row.get("limit") == BATCH_LIMIT:  # it had started
                        self.running -= 1
                        self.spent += float(usage.get("cost") or 0.0)
                if status == RunStatus.SKIPPED or row.get("limit") == BATCH_LIMIT:
                    report.skipped += 1
                elif status == RunStatus.FAILED:
                    report.failed += 1
                else:
                    report.done += 1
                report.cost = self._cost_so_far()
                if self.on_update:
                    self.on_update(report, self.running, total)
        finally:
            register_spend(self.batch_id, None)
            self.executor.close()
        report.seconds = time.monotonic() - started
        report.cost = self._cost_so_far()
        return report
