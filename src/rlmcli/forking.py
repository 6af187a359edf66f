"""Forked helpers (PDF page workers, the token counter) that never see Ctrl-C.

A terminal's Ctrl-C goes to the whole process group. A helper that gets it between fork() and
ignoring SIGINT would raise KeyboardInterrupt in a copy of the parent's code; and a parent that
gets it between fork() and recording the child's pid would leak that child. So SIGINT is held
back around both.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def sigint_held() -> Iterator[None]:
    """Delay Ctrl-C in this thread until the block ends (record the child's pid inside it)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread takes SIGINT
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def fork_helper() -> int:
    """os.fork(), the child ignoring SIGINT from its first instruction. Call inside sigint_held()."""
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    return pid


def fork_server(serve: Callable[[int, int], None]) -> tuple[int, int, int]:
    """A forked helper running `serve(reads, writes)` on two new pipes; returns (its pid, the pipe
    to write to it, the pipe to read from it). It exits when `serve` returns. Call inside
    sigint_held(); an OSError from fork leaves no descriptor open."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    try:
        pid = fork_helper()
    except OSError:
        for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
            os.close(fd)
        raise
    if pid == 0:  # the helper
        try:
            os.close(to_child_w)
            os.close(from_child_r)
            serve(to_child_r, from_child_w)
        finally:
            os._exit(0)
    os.close(to_child_r)
    os.close(from_child_w)
    return pid, to_child_w, from_child_r
