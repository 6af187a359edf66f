"""Batch jobs: many questions over many documents, resumable, for cron.

A results file is the batch's memory: each finished job is appended as one JSON line at once
(the `ask --json` object plus the job id), so a killed batch loses nothing it finished, and a
re-run skips the ids already there (failed ones too, unless `rerun_failed`).

Jobs run through an `Executor`; `LocalExecutor` runs them on threads of this machine. A
distributed executor only has to implement the same `run()`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from rlmcli.config import range_error
from rlmcli.engine.budget import Limits
from rlmcli.engine.models import ModelConfig
from rlmcli.errors import UsageError

LIMIT_KEYS = ("max_iterations", "max_depth", "max_calls", "max_tokens", "max_cost", "timeout", "concurrency")


@dataclass
class Job:
    id: str
    question: str
    files: list[str] = field(default_factory=list)
    workspace: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # model, sub_model, max_* for this job


@dataclass
class JobError:
    line: int
    message: str


def parse_jobs(path: Path) -> tuple[list[Job], list[JobError]]:
    """Jobs from a JSONL file; a malformed line becomes an error naming its line number."""
    jobs, errors, seen = [], [], set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            job_id = str(raw.get("id") or f"line-{number}")
            question = raw.get("question")
            if not isinstance(question, str) or not question.strip():
                raise ValueError("'question' must be a non-empty string")
            files = raw.get("files") or []
            if isinstance(files, str):
                files = [files]
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise ValueError("'files' must be a list of paths")
            workspace = raw.get("workspace")
            if not files and not workspace:
                raise ValueError("a job needs 'files' or 'workspace'")
            if job_id in seen:
                raise ValueError(f"duplicate id {job_id!r}")
            unknown = set(raw) - {"id", "question", "files", "workspace", "model", "sub_model", *LIMIT_KEYS}
            if unknown:
                raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
            overrides = {k: raw[k] for k in ("model", "sub_model", *LIMIT_KEYS) if k in raw}
            for key in LIMIT_KEYS:
                problem = range_error(key, overrides.get(key))
                if problem:
                    raise ValueError(f"{key!r} {problem}")
            seen.add(job_id)
            base = path.parent
            jobs.append(Job(job_id, question, [f if f == "-" or os.path.isabs(f) else str(base / f) for f in files],
                            workspace, overrides))
        except ValueError as exc:
            errors.append(JobError(number, str(exc)))
    return jobs, errors


def question_jobs(questions: Path, files: list[str]) -> list[Job]:
    """`--questions Q.txt FILE...`: one job per non-empty line, all over the same files."""
    lines = [q.strip() for q in questions.read_text(encoding="utf-8").splitlines()]
    return [Job(f"q{n}", q, list(files)) for n, q in enumerate(lines, start=1) if q and not q.startswith("#")]


def finished_ids(results: Path, rerun_failed: bool) -> set[str]:
    """Ids whose latest result line counts as done."""
    latest: dict[str, str] = {}
    if results.exists():
        for line in results.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                latest[str(row["id"])] = row.get("status", "failed")
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill
    return {i for i, status in latest.items() if not (rerun_failed and status in ("failed", "skipped"))}


class ResultsFile:
    """Appends one JSON line per finished job, flushed and synced at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        try:  # fail before the first job, not after it
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a+b") as fh:
                if fh.seek(0, os.SEEK_END):
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":  # a kill cut the last line: start ours on a fresh one
                        fh.write(b"\n")
        except OSError as exc:
            raise UsageError(f"{path}: cannot write results there ({exc.strerror or exc})") from None

    def append(self, row: dict[str, Any]) -> None:
        data = json.dumps(row, ensure_ascii=False, default=str) + "\n"
        with self.lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


class Executor(Protocol):
    def run(self, jobs: Iterable[Job], work: Callable[[Job], dict[str, Any]],
            may_start: Callable[[], str | None]) -> Iterator[tuple[Job, dict[str, Any]]]:
        """Run `work` on jobs, yielding (job, result) as each finishes. Before starting a job,
        `may_start()` returns None, or a reason to skip it (the batch budget is spent)."""
        ...


class LocalExecutor:
    """N jobs at a time on threads of this machine."""

    def __init__(self, jobs_at_once: int) -> None:
        self.n = max(1, jobs_at_once)

    def run(self, jobs: Iterable[Job], work: Callable[[Job], dict[str, Any]],
            may_start: Callable[[], str | None]) -> Iterator[tuple[Job, dict[str, Any]]]:
        queue = list(jobs)
        running: dict[Future[dict[str, Any]], Job] = {}
        with ThreadPoolExecutor(max_workers=self.n) as pool:
            while queue or running:
                while queue and len(running) < self.n:
                    job = queue.pop(0)
                    reason = may_start()
                    if reason is not None:
                        yield job, {"status": "skipped", "error": reason}
                        continue
                    running[pool.submit(work, job)] = job
                if not running:
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    try:
                        yield job, future.result()
                    except Exception as exc:  # noqa: BLE001 - a crashed job fails alone
                        yield job, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


@dataclass
class BatchReport:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    already: int = 0
    malformed: int = 0
    cost: float = 0.0
    seconds: float = 0.0


class Batch:
    """Runs jobs with shared provider concurrency, shared ingest and a batch-wide cost cap."""

    def __init__(self, config: ModelConfig, limits: Limits, sandbox: str = "auto", jobs_at_once: int = 4,
                 max_cost: float | None = None, executor: Executor | None = None,
                 on_update: Callable[[BatchReport, int, int], None] | None = None) -> None:
        self.config = config
        self.limits = limits
        self.sandbox = sandbox
        self.max_cost = max_cost
        self.executor = executor or LocalExecutor(jobs_at_once)
        self.on_update = on_update
        # One bound on provider requests in flight across all jobs.
        self.semaphore = threading.BoundedSemaphore(max(1, limits.concurrency))
        self.lock = threading.Lock()
        self.spent = 0.0  # finished jobs
        self.live: dict[str, Any] = {}  # budgets of running jobs
        self.workspaces: dict[tuple[str, ...], Any] = {}
        self.running = 0
        # Warm sandboxes per workspace: a job takes one (reset: no variables survive) instead of
        # paying ~45 ms of CPU to start a confined interpreter.
        self.idle: dict[str, list[Any]] = {}

    def _cost_so_far(self) -> float:
        with self.lock:
            live = sum(sum(c.cost or 0.0 for c in b.calls if not c.cache_hit) for b in self.live.values())
            return self.spent + live

    def _may_start(self) -> str | None:
        if self.max_cost is not None and self._cost_so_far() >= self.max_cost:
            return f"batch budget reached: ${self._cost_so_far():.4f} of --max-cost ${self.max_cost:g}; job not started"
        return None

    def prepare(self, jobs: list[Job]) -> dict[str, str]:
        """Ingest each distinct set of files once (before any job starts); errors by job id."""
        from rlmcli.workspace.ingest import ingest, workspace_path
        from rlmcli.workspace.store import Workspace

        problems: dict[str, str] = {}
        for job in jobs:
            key = tuple(sorted(job.files)) if job.files else ("-w", job.workspace or "")
            if key in self.workspaces:
                continue
            try:
                if job.files:
                    ws, report = ingest(job.files, job.workspace)
                    if not ws.documents():
                        raise UsageError("; ".join(f"{n}: {p}" for n, p in report.failed) or "nothing ingested")
                else:
                    ws = Workspace.open(workspace_path(job.workspace or ""))
                self.workspaces[key] = ws
            except Exception as exc:  # noqa: BLE001 - this job (and its siblings) fail alone
                self.workspaces[key] = exc
        for job in jobs:
            key = tuple(sorted(job.files)) if job.files else ("-w", job.workspace or "")
            value = self.workspaces[key]
            if isinstance(value, Exception):
                problems[job.id] = str(value)
        return problems

    def _work(self, job: Job) -> dict[str, Any]:
        from rlmcli.answer import check_citations
        from rlmcli.ask import answer_record, cache_path
        from rlmcli.engine.budget import Budget
        from rlmcli.engine.loop import Engine
        from rlmcli.engine.models import Gateway
        from rlmcli.trace.store import TraceWriter, new_run_id

        key = tuple(sorted(job.files)) if job.files else ("-w", job.workspace or "")
        ws = self.workspaces[key]
        o = job.overrides
        config = replace(self.config, model=o.get("model", self.config.model),
                         sub_model=o.get("sub_model", self.config.sub_model))
        limits = replace(self.limits, **{k: o[k] for k in LIMIT_KEYS if k in o})
        budget = Budget(limits)
        run_id = new_run_id()
        trace = TraceWriter(ws.root / "runs" / f"{run_id}.jsonl")
        gateway = Gateway(config, budget, trace, cache_path())
        gateway.semaphore = self.semaphore
        with self.lock:
            self.live[job.id] = budget
            self.running += 1
            warm = self.idle.get(str(ws.root), [])
            sandbox = warm.pop() if warm else None
        if sandbox is None:
            from rlmcli.sandbox import Sandbox

            sandbox = Sandbox(ws.root, level=self.sandbox).start()
        try:
            engine = Engine(ws, config, limits, trace, sandbox_level=self.sandbox, gateway=gateway, sandbox=sandbox)
            result = engine.run(job.question)
        finally:
            trace.close()
            with self.lock:
                self.idle.setdefault(str(ws.root), []).append(sandbox)
                self.live.pop(job.id, None)
                self.running -= 1
                self.spent += sum(c.cost or 0.0 for c in budget.calls if not c.cache_hit)
        citations = check_citations(result.answer, ws) if result.answer else []
        return answer_record(result, citations, run_id, trace.path, ws)

    def run(self, jobs: list[Job], results: ResultsFile, report: BatchReport) -> BatchReport:
        from rlmcli.engine.models import prewarm

        started = time.monotonic()
        if jobs:
            prewarm()
        problems = self.prepare(jobs)
        runnable = []
        for job in jobs:
            if job.id in problems:
                results.append({"id": job.id, "question": job.question, "status": "failed", "error": problems[job.id]})
                report.failed += 1
            else:
                runnable.append(job)
        total = len(jobs)
        for job, row in self.executor.run(runnable, self._work, self._may_start):
            row = {"id": job.id, "question": job.question, **row}
            results.append(row)
            status = row.get("status")
            if status == "skipped":
                report.skipped += 1
            elif status == "failed":
                report.failed += 1
            else:
                report.done += 1
            report.cost = self._cost_so_far()
            if self.on_update:
                self.on_update(report, self.running, total)
        report.seconds = time.monotonic() - started
        report.cost = self._cost_so_far()
        for pool in self.idle.values():
            for sandbox in pool:
                sandbox.close()
        self.idle.clear()
        return report
