"""Executors run `Work` items and yield results as they finish. The local one uses threads; a
distributed one (executors_ray.py) only has to implement the same `run()`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from rlmcli.batch.work import Work, run_work
from rlmcli.records import RunStatus

Result = tuple[Work, dict[str, Any]]


class Executor(Protocol):
    def run(self, works: Iterable[Work], may_start: Callable[[], str | None]) -> Iterator[Result]:
        """Run each work item, yielding (work, row) as each finishes. Before starting one,
        `may_start()` returns None, or a reason to skip it (the batch budget is spent)."""
        ...

    def live_cost(self, batch_id: str) -> float:
        """US dollars spent so far by the batch's running jobs (finished ones are in their rows)."""
        ...

    def close(self) -> None: ...


def start_more(queue: list[Work], running: dict[Any, Work], n: int, may_start: Callable[[], str | None],
               submit: Callable[[Work], Any]) -> Iterator[Result]:
    """Start queued work until `n` are running; yields the items the batch budget skips."""
    while queue and len(running) < n:
        work = queue.pop(0)
        reason = may_start()
        if reason is not None:
            yield work, {"status": RunStatus.SKIPPED.value, "error": reason}
            continue
        running[submit(work)] = work


class LocalExecutor:
    """N jobs at a time on threads of this machine; warm sandboxes are reused between jobs."""

    def __init__(self, jobs_at_once: int) -> None:
        self.n = max(1, jobs_at_once)

    def run(self, works: Iterable[Work], may_start: Callable[[], str | None]) -> Iterator[Result]:
        queue = list(works)
        running: dict[Future[dict[str, Any]], Work] = {}
        with ThreadPoolExecutor(max_workers=self.n) as pool:
            while queue or running:
                yield from start_more(queue, running, self.n, may_start, lambda w: pool.submit(run_work, w))
                if not running:
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    work = running.pop(future)
                    try:
                        yield work, future.result()
                    except Exception as exc:  # noqa: BLE001 - a crashed job fails alone
                        yield work, {"status": RunStatus.FAILED.value, "error": f"{type(exc).__name__}: {exc}"}

    def live_cost(self, batch_id: str) -> float:
        from rlmcli.batch.work import live_cost

        return live_cost(batch_id)

    def close(self) -> None:
        from rlmcli.batch.work import close_idle_sandboxes

        close_idle_sandboxes()
