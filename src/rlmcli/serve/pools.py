"""Bounded worker pools for the MCP tools: one per kind of work, each with its own threads.

A pool runs at most `size` calls at once and lets at most `waiting` more wait; past that a call
gets a busy reply at once (a tool error), never a place in a queue of hours. Every call carries a
`Ticket`: cancelling the call (the client's `notifications/cancelled`, or stdin closing) runs the
ticket's hooks, which stop the work itself (kill the sandbox process, interrupt SQLite, stop a
run's budget), so the slot is free again when the thread returns moments later. A slot is freed
only when its thread is done: a cancelled call cannot leave a thread behind that still counts.

The pools wait on their futures with asyncio (anyio.run's default backend, which the MCP SDK uses).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from rlmcli.errors import RlmError

T = TypeVar("T")


class Busy(RlmError):
    """The pool for this kind of work is full (or the server is shutting down): try again later."""


class Ticket:
    """One call's cancellation: hooks registered while a step runs are called once on cancel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self.cancelled = False

    @contextlib.contextmanager
    def hook(self, stop: Callable[[], None]) -> Iterator[None]:
        """While the block runs, a cancel calls `stop` (at once if already cancelled)."""
        with self._lock:
            self._hooks.append(stop)
            late = self.cancelled
        if late:
            _quietly(stop)
        try:
            yield
        finally:
            with self._lock:
                self._hooks.remove(stop)

    def cancel(self) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
            hooks = list(self._hooks)
        for stop in hooks:
            _quietly(stop)


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - a stop hook that fails leaves the work to its own limits
        pass


class Pool:
    def __init__(self, kind: str, size: int, waiting: int, busy: str = "") -> None:
        self.kind, self.size, self.waiting = kind, max(1, size), max(0, waiting)
        self.busy = busy  # the busy reply, when the generic one says less
        self._lock = threading.Lock()
        self._pending = 0  # running + waiting
        self._tickets: set[Ticket] = set()
        self._closed = False
        self._executor = ThreadPoolExecutor(self.size, thread_name_prefix=f"rlm-{kind}")

    def _admit(self) -> None:
        with self._lock:
            if self._closed:
                raise Busy("the server is shutting down")
            if self._pending >= self.size + self.waiting:
                if self.busy:
                    raise Busy(self.busy)
                queued = f" and {self.waiting} more are waiting" if self.waiting else ""
                raise Busy(f"busy: {self.size} {self.kind} call{'s are' if self.size > 1 else ' is'} running"
                           f"{queued} (the server's limit); try again when one finishes")
            self._pending += 1

    def _done(self, _future: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[[Ticket], T]) -> T:
        """`fn(ticket)` on one of this pool's threads; Busy when the pool is full."""
        self._admit()
        ticket = Ticket()

        def work() -> T:
            with self._lock:
                self._tickets.add(ticket)
            try:
                return fn(ticket)
            finally:
                with self._lock:
                    self._tickets.discard(ticket)

        try:
            future = self._executor.submit(work)
        except RuntimeError:  # the executor was shut down a moment ago
            self._done(Future())
            raise Busy("the server is shutting down") from None
        future.add_done_callback(self._done)  # also when cancelled before it started
        try:
            return await asyncio.wrap_future(future)  # cancelling this cancels a future not yet started
        except asyncio.CancelledError:
            ticket.cancel()
            raise

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def shutdown(self) -> None:
        """Refuse new calls, drop the waiting ones and cancel the running ones."""
        with self._lock:
            self._closed = True
            tickets = list(self._tickets)
        self._executor.shutdown(wait=False, cancel_futures=True)
        for ticket in tickets:
            ticket.cancel()


REPL_BUSY = ("busy: all {n} repl sessions are running cells (the server's limit, --max-sessions); "
             "try again when one finishes")


class Pools:
    """The server's pools. Sizes suit a few cores: the quick ones never wait behind the slow."""

    def __init__(self, sessions: int, sandboxes: int) -> None:
        self.quick = Pool("read", 4, 256)  # list_documents, read_page, the page resource: milliseconds
        self.search = Pool("search", 2, 16)  # in-process SQLite, bounded terms and a deadline
        self.grep = Pool("grep", sandboxes, 8)  # one pooled sandbox each
        self.repl = Pool("repl", sessions, 0, busy=REPL_BUSY.format(n=sessions))  # one cell per session at a time
        self.ask = Pool("ask", 2, 0)  # minutes of model calls each
        self.ingest = Pool("ingest", 1, 2)  # CPU-bound; the workspace lock serializes writers anyway
        self.all = (self.quick, self.search, self.grep, self.repl, self.ask, self.ingest)

    def shutdown(self) -> None:
        for pool in self.all:
            pool.shutdown()

    def drain(self, polls: int, every: float = 0.1) -> bool:
        """Wait (up to `polls` checks) for every running call to return; True when all did."""
        for _ in range(polls):
            if not any(pool.pending for pool in self.all):
                return True
            time.sleep(every)
        return not any(pool.pending for pool in self.all)
