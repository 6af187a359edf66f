"""One batch job as plain data, and the pure function that runs it.

`Work` holds everything a job needs: the job, the batch's settings as a dict, the prepared
workspace path and the name of the shared request limiter. `run_work(work)` returns the result
row. Nothing closes over the driver's state, so an executor can ship `Work` to a thread, a
process or another machine (Ray) and call `run_work` there.

Per-process state is looked up by name, never captured: warm sandboxes per workspace, and
request limiters (a thread semaphore locally; a Ray actor on a cluster, see executors_ray.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlmcli.batch.jobs import Job
from rlmcli.batch.results import BATCH_LIMIT
from rlmcli.config import Settings
from rlmcli.records import Limit, RunStatus


@dataclass
class Work:
    job: Job
    settings: dict[str, Any]  # Settings.to_dict() of the batch
    workspace: str  # the prepared workspace's root
    limiter: str = ""  # name of the request limiter shared by the batch's jobs
    batch_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # executor-specific (a Ray limiter handle)
    schema: dict[str, Any] | None = None  # --schema / --schema-multi: a JSON Schema every answer must meet
    schema_multi: bool = False


# ---- per-process state, found by name ---------------------------------------------------------
_lock = threading.Lock()
_limiters: dict[str, AbstractContextManager[Any]] = {}
_idle: dict[tuple[str, str], list[Any]] = {}
_live: dict[str, dict[str, Any]] = {}  # batch id -> job id -> Budget of a running job
_spend: dict[str, Any] = {}  # batch id -> the SharedSpend its jobs in this process book requests on
LimiterFactory = Callable[[str, int], AbstractContextManager[Any]]


def local_limiter(name: str, concurrency: int) -> AbstractContextManager[Any]:
    with _lock:
        if name not in _limiters:
            _limiters[name] = threading.BoundedSemaphore(max(1, concurrency))
        return _limiters[name]


def live_cost(batch_id: str, job_id: str | None = None) -> float:
    """US dollars spent so far by this process's running jobs of a batch (or by one of them)."""
    with _lock:
        running = _live.get(batch_id, {})
        budgets = list(running.values()) if job_id is None else [b for j, b in running.items() if j == job_id]
    return sum(sum(c.cost or 0.0 for c in b.calls if not c.cache_hit) for b in budgets)


def register_spend(batch_id: str, spend: Any) -> None:
    """The batch's --max-cost ledger (a SharedSpend) for jobs run in this process; None removes it."""
    with _lock:
        if spend is None:
            _spend.pop(batch_id, None)
        else:
            _spend[batch_id] = spend


def close_idle_sandboxes() -> None:
    with _lock:
        pools = list(_idle.values())
        _idle.clear()
    for pool in pools:
        for sandbox in pool:
            sandbox.close()


def take_sandbox(root: str, settings: Settings) -> Any:
    with _lock:
        pool = _idle.get((root, settings.sandbox))
        if pool:
            return pool.pop()
    from rlmcli.ask import sandbox_limits
    from rlmcli.sandbox.process import Sandbox

    return Sandbox(root, level=settings.sandbox, limits=sandbox_limits(settings)).start()


def give_back_sandbox(root: str, level: str, sandbox: Any) -> None:
    with _lock:
        _idle.setdefault((root, level), []).append(sandbox)


def run_work(work: Work, limiter: LimiterFactory = local_limiter) -> dict[str, Any]:
    """Run one job; the result row (the `ask --json` object), or a failed row. Never raises."""
    from rlmcli.ask import answer_record, limits_of, run_question
    from rlmcli.engine.budget import Budget
    from rlmcli.workspace.store import Workspace

    job = work.job
    try:
        settings = Settings.from_dict(work.settings).override(job.overrides, f"job {job.id}")
        ws = Workspace.open(Path(work.workspace))
        slots = limiter(work.limiter, settings.concurrency) if work.limiter else None
        with _lock:
            shared = _spend.get(work.batch_id)
        budget = Budget(limits_of(settings), shared=shared)
        shape = None
        if work.schema is not None:
            from rlmcli.schema import AnswerShape

            shape = AnswerShape(work.schema, work.schema_multi)
        sandbox = take_sandbox(str(ws.root), settings)
        with _lock:
            _live.setdefault(work.batch_id, {})[job.id] = budget
        try:
            result = run_question(settings, ws, job.question, sandbox=sandbox, slots=slots, budget=budget, shape=shape)
        finally:
            give_back_sandbox(str(ws.root), settings.sandbox, sandbox)
            with _lock:
                _live.get(work.batch_id, {}).pop(job.id, None)
        row = answer_record(result)
        if budget.stopped_by_batch and result.limit is Limit.MAX_COST:  # the batch's, not the job's: rerun it
            row["limit"] = BATCH_LIMIT
            if not any(not c.cache_hit for c in budget.calls):
                return {"status": RunStatus.SKIPPED.value, "limit": BATCH_LIMIT, "usage": row["usage"],
                        "error": "batch budget reached: its first request did not fit in what the batch had left"}
        return row
    except Exception as exc:  # noqa: BLE001 - a job fails alone, with its reason
        return {"status": RunStatus.FAILED.value, "error": str(exc) or type(exc).__name__}
