"""The results file is the batch's memory: each finished job is appended at once as one JSON
line (the `ask --json` object plus the job id), so a killed batch loses nothing it finished, and
a re-run skips the ids already there (failed ones too, unless rerun_failed).

One writer at a time: an OS lock on `<results>.lock` beside it, which the kernel releases when
its holder dies, so two overlapping cron runs never answer (and pay for) every job twice. Each
line goes out in whole or not at all: a write that fails part-way (a full disk) is truncated
away, and a line a kill cut short is removed when the file is next opened.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from rlmcli.errors import RlmError, UsageError
from rlmcli.records import Limit, RunStatus

LOCK_SUFFIX = ".lock"


class ResultsWriteError(RlmError):
    """A result line could not be written (no space left, a read-only remount, an I/O error)."""


def latest_rows(results: Path) -> dict[str, dict[str, Any]]:
    """The newest row of each id (a line cut by a kill, or not JSON, is skipped)."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        data = results.read_bytes()
    except FileNotFoundError:
        return latest
    for line in data.split(b"\n"):
        try:
            row = json.loads(line)
            latest[str(row["id"])] = row
        except (ValueError, KeyError, TypeError):
            continue
    return latest

BATCH_LIMIT = Limit.BATCH_MAX_COST.value  # the `limit` of a job the batch's --max-cost stopped mid-run

def finished_ids(results: Path, rerun_failed: bool, questions: dict[str, str] | None = None) -> set[str]:
    """Ids whose latest result line counts as done. Never done: jobs the batch budget skipped or
    cut short (a rerun finishes them), failed ones with `rerun_failed`, and ids whose recorded
    question is not `questions[id]` (the question under this id changed)."""
    done = set()
    for job_id, row in latest_rows(results).items():
        status = row.get("status", RunStatus.FAILED)
        if status == RunStatus.SKIPPED or row.get("limit") == BATCH_LIMIT or (rerun_failed and status == RunStatus.FAILED):
            continue
        asked = row.get("question")
        if questions is not None and isinstance(asked, str) and job_id in questions and questions[job_id] != asked:
            continue
        done.add(job_id)
    return done


def _lock(path: Path) -> int:
    """An exclusive flock on `<path>.lock`, whose file holds the holder's PID; raises when another
    process holds it. A holder removes the file as it finishes, so after locking we check the
    file is still the one at that path (else a newcomer could lock a fresh one beside us)."""
    import fcntl

    lock_path = path.with_name(path.name + LOCK_SUFFIX)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"another rlm batch (pid {holder})" if holder.isdigit() else "another rlm batch"
            raise UsageError(f"{path}: {who} is writing these results; not started (two runs on one results "
                             "file would run every job twice; wait for it, or give another -o)") from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # a full disk: the lock holds without the PID in it
            return fd
        os.close(fd)


class ResultsFile:
    """Appends one JSON line per finished job, written whole and synced at once. Only the driver
    writes, and only while it holds the file's lock (taken here; `close()` releases it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.repaired = 0  # bytes of a cut last line removed on opening
        self.fd = -1
        self._lock_fd: int | None = None
        try:  # fail before the first job, not after it
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(f"{path}: cannot write results there ({exc.strerror or exc})") from None
        try:
            self._lock_fd = _lock(path)
            self.repaired = self._repair_tail()
        except OSError as exc:
            os.close(self.fd)
            self.fd = -1
            self._unlock()
            raise UsageError(f"{path}: cannot write results there ({exc.strerror or exc})") from None
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise

    def _repair_tail(self) -> int:
        """Remove a last line without its newline (a kill or a full disk cut it); a whole JSON
        line that only lacks the newline gets one. Returns the bytes removed."""
        size = os.fstat(self.fd).st_size
        end = size
        while end > 0:  # back to the last newline
            start = max(0, end - (1 << 16))
            block = os.pread(self.fd, end - start, start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        if end == size:
            return 0
        tail = os.pread(self.fd, size - end, end)
        try:
            whole = isinstance(json.loads(tail), dict)
        except ValueError:
            whole = False
        if whole:
            os.write(self.fd, b"\n")
            return 0
        os.ftruncate(self.fd, end)
        return size - end

    def append(self, row: dict[str, Any]) -> None:
        """Write the row as one line and fsync it (errors a full disk defers show up there); on
        failure the file is put back as it was and ResultsWriteError says why."""
        data = (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8", "surrogatepass")
        with self.lock:
            start = os.fstat(self.fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view):]
                os.fsync(self.fd)
            except OSError as exc:
                try:
                    os.ftruncate(self.fd, start)  # no cut line left behind
                except OSError:
                    pass
                raise ResultsWriteError(f"cannot write to {self.path} ({exc.strerror or exc})") from None

    def close(self) -> None:
        """Release the lock (after a last fsync) and the file."""
        if self.fd < 0:
            return
        try:
            os.fsync(self.fd)
        except OSError:
            pass  # each line was synced as it was written; nothing more is at stake here
        os.close(self.fd)
        self.fd = -1
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            os.unlink(self.path.with_name(self.path.name + LOCK_SUFFIX))  # while still locked: see _lock
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter teardown
            pass
