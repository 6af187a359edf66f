"""The batch driver: ingest shared documents once, hand Work to an executor, cap the cost,
append each result as it arrives. Only the driver writes the results file, so resuming works the
same whatever the executor."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlmcli.batch.executors import Executor, LocalExecutor
from rlmcli.batch.jobs import Job
from rlmcli.batch.results import BATCH_LIMIT, ResultsFile
from rlmcli.batch.work import Work, register_spend
from rlmcli.config import Settings
from rlmcli.engine.budget import SharedSpend
from rlmcli.errors import UsageError


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


class Batch:
    def __init__(self, settings: Settings, jobs_at_once: int = 4, max_cost: float | None = None,
                 executor: Executor | None = None,
                 on_update: Callable[[BatchReport, int, int], None] | None = None) -> None:
        self.settings = settings
        self.max_cost = max_cost
        self.executor = executor or LocalExecutor(jobs_at_once)
        self.on_update = on_update
        self.batch_id = os.urandom(6).hex()
        self.spend = SharedSpend(max_cost)  # jobs on this machine book each request's worst case here
        self.lock = threading.Lock()
        self.spent = 0.0  # finished jobs
        self.running = 0
        self.workspaces: dict[tuple[str, ...], Any] = {}  # inputs -> Workspace, or the Exception

    def _cost_so_far(self) -> float:
        with self.lock:
            spent = self.spent
        return spent + self.executor.live_cost(self.batch_id)

    def _may_start(self) -> str | None:
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
            if job.inputs_key in self.workspaces:
                continue
            try:
                if job.files:
                    ws, report = ingest(job.files, job.workspace, ocr=self.settings.ocr)
                    if not ws.documents():
                        raise UsageError("; ".join(f"{n}: {p}" for n, p in report.failed) or "nothing ingested")
                else:
                    ws = Workspace.open(workspace_path(job.workspace or ""))
                self.workspaces[job.inputs_key] = ws
            except Exception as exc:  # noqa: BLE001 - this job (and its siblings) fail alone
                self.workspaces[job.inputs_key] = exc
        return {job.id: str(self.workspaces[job.inputs_key]) for job in jobs
                if isinstance(self.workspaces[job.inputs_key], Exception)}

    def run(self, jobs: list[Job], results: ResultsFile, report: BatchReport) -> BatchReport:
        started = time.monotonic()
        problems = self.prepare(jobs)
        works = []
        settings = self.settings.to_dict()
        for job in jobs:
            if job.id in problems:
                results.append({"id": job.id, "question": job.question, "status": "failed", "error": problems[job.id]})
                report.failed += 1
            else:
                root = str(self.workspaces[job.inputs_key].root)
                works.append(Work(job, settings, root, limiter=f"batch-{self.batch_id}", batch_id=self.batch_id))
        total = len(jobs)
        register_spend(self.batch_id, self.spend)
        try:
            for work, row in self.executor.run(works, self._may_start):
                row = {"id": work.job.id, "question": work.job.question, **row}
                results.append(row)
                status = row.get("status")
                usage = row.get("usage") or {}
                if usage.get("calls") and usage.get("cost") is None:
                    report.cost_known = False
                with self.lock:
                    if status != "skipped" or row.get("limit") == BATCH_LIMIT:  # it had started
                        self.running -= 1
                        self.spent += float(usage.get("cost") or 0.0)
                if status == "skipped" or row.get("limit") == BATCH_LIMIT:
                    report.skipped += 1
                elif status == "failed":
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
