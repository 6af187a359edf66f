"""The MCP server's sandbox processes seen from outside: stopping one, counting its threads, the
capped pool grep runs in, and the timer that closes what sits idle.

These work on a started `sandbox.process.Sandbox` through its child's process id only: stopping
is a SIGKILL to the child's process group (the sandbox's own recovery then restarts it), and the
thread count is read from /proc, which code in the child cannot forge.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from rlmcli.config import Settings
from rlmcli.serve.pools import Busy


def child_pid(sandbox: Any) -> int | None:
    proc = getattr(sandbox, "proc", None)
    return proc.pid if proc is not None and proc.returncode is None else None


def interrupt(sandbox: Any) -> None:
    """Kill the sandbox's child where it stands (any thread may call this while another waits on
    the cell: that one sees the channel close and restarts the child)."""
    pid = child_pid(sandbox)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def alive(sandbox: Any) -> bool:
    proc = getattr(sandbox, "proc", None)
    return proc is not None and proc.poll() is None


def threads_of(sandbox: Any) -> int:
    """Threads of the sandbox's child and of any process under it (0 where /proc is missing)."""
    pid = child_pid(sandbox)
    total, todo = 0, [pid] if pid is not None else []
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        total += len(tasks)
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
            except (OSError, ValueError):
                pass
    return total


def start_sandbox(root: str, settings: Settings) -> Any:
    from rlmcli.ask import sandbox_limits
    from rlmcli.sandbox.process import Sandbox

    return Sandbox(root, level=settings.sandbox, limits=sandbox_limits(settings)).start()


class SandboxPool:
    """Warm sandboxes for `grep`, which runs only its own fixed cell in them: at most `cap`
    processes across all workspaces, each closed after `idle` seconds unused."""

    def __init__(self, settings: Settings, cap: int, idle: float) -> None:
        self.settings, self.cap, self.idle = settings, max(1, cap), idle
        self._lock = threading.Lock()
        self._idle: list[tuple[str, float, Any]] = []  # (workspace root, last used, sandbox), oldest first
        self._busy = 0
        self._closed = False

    def take(self, root: str) -> Any:
        with self._lock:
            if self._closed:
                raise Busy("the server is shutting down")
            for i, (r, _, sandbox) in enumerate(self._idle):
                if r == root:
                    del self._idle[i]
                    self._busy += 1
                    return sandbox
            if self._busy >= self.cap:
                raise Busy(f"busy: all {self.cap} grep sandboxes are in use; try again when one finishes")
            victim = self._idle.pop(0)[2] if self._busy + len(self._idle) >= self.cap else None
            self._busy += 1
        if victim is not None:
            victim.close()  # the least recently used, of another workspace
        try:
            return start_sandbox(root, self.settings)
        except BaseException:
            with self._lock:
                self._busy -= 1
            raise

    def give_back(self, root: str, sandbox: Any) -> None:
        with self._lock:
            self._busy -= 1
            keep = not self._closed and alive(sandbox)
            if keep:
                self._idle.append((root, time.monotonic(), sandbox))
        if not keep:
            sandbox.close()

    def reap(self, now: float) -> int:
        with self._lock:
            stale = [s for _, used, s in self._idle if now - used >= self.idle]
            self._idle = [e for e in self._idle if now - e[1] < self.idle]
        for sandbox in stale:
            sandbox.close()
        return len(stale)

    def processes(self) -> int:
        with self._lock:
            return self._busy + len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = [s for _, _, s in self._idle], []
        for sandbox in idle:
            sandbox.close()


class Reaper:
    """One timer thread calling each `reap(now)` every `period` seconds until stopped."""

    def __init__(self, period: float, reaps: list[Callable[[float], Any]]) -> None:
        self.period, self.reaps = max(0.05, period), reaps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rlm-reaper", daemon=True)

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for reap in self.reaps:
                try:
                    reap(time.monotonic())
                except Exception:  # noqa: BLE001 - the next tick tries again
                    pass

    def stop(self) -> None:
        self._stop.set()
