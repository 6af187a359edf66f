"""Batch jobs as Ray tasks: the same `Work` and `run_work` as the local executor, on a cluster.

The driver keeps the results file; tasks return rows. Provider requests are bounded across the
cluster by one limiter actor on the driver's node. A job whose node or worker process dies runs
again elsewhere (Ray's retries for system failures), else it gets a failed row with Ray's cause.
Workspaces reach workers on a shared filesystem (same path on every machine), or, with
`ship=True`, as a tarball in Ray's object store unpacked once per machine into a copy that is
removed from every node when the batch ends (and swept by a later batch when a crash left it);
the jobs' traces come back to the driver's workspace.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rlmcli.batch.executors import Result, start_more
from rlmcli.batch.work import Work, close_idle_sandboxes, live_cost, register_spend, run_work
from rlmcli.cluster import (
    HEAD_CHECK_EVERY,
    WAIT_STEP,
    ActorSlots,
    ActorSpend,
    ClusterError,
    connect,
    describe,
    disconnect,
    head_lost,
    make_limiter,
)
from rlmcli.records import RunStatus

SHIPPED_DIR = "rlm-ray-workspaces"  # under the worker machine's temp dir
JOB_CPUS = 0.25
JOB_RETRIES = 2  # runs of a job after its node or worker process died (Ray retries system failures only)
REPORT_EVERY = 0.5  # seconds between a running job's spend reports
STALE_AFTER = 24 * 3600.0  # a shipped copy unused this long (its batch crashed) is swept
SWEEP_TIMEOUT = 30.0  # removing a batch's copies from every node


def _shipped(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """What a worker needs: pages, text, index, manifest; not the lock, half-built documents or traces."""
    top = info.name.split("/")[1] if info.name.startswith("./") and info.name.count("/") >= 1 else ""
    if info.name.endswith(".lock") or top in (".tmp", "runs"):
        return None
    return info


def pack_workspace(root: str, batch: str = "") -> tuple[str, bytes]:
    """(key, tar bytes) of a workspace; the key names this batch's copy of this manifest."""
    manifest = Path(root, "manifest.json").read_bytes()
    key = hashlib.sha256(root.encode() + b"\0" + manifest).hexdigest()[:16] + (f"-{batch}" if batch else "")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root, arcname=".", filter=_shipped)
    return key, buf.getvalue()


def shipped_base() -> Path:
    return Path(tempfile.gettempdir()) / SHIPPED_DIR


def unpack_workspace(key: str, data: bytes) -> str:
    """Unpack once per machine (atomic rename, so concurrent tasks never see half a workspace)."""
    base = shipped_base()
    target = base / key
    if (target / "manifest.json").is_file():
        with contextlib.suppress(OSError):
            os.utime(target)  # in use: not stale
        return str(target)
    sweep_shipped(keep=key)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=base))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        try:
            tar.extractall(staging, filter="data")  # our own tarball, still extracted with the safe filter
        except TypeError:  # Python before 3.10.12 has no filters; the tarball is the driver's own
            tar.extractall(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another task won the race
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def sweep_shipped(keys: Iterable[str] = (), keep: str = "", stale_after: float = STALE_AFTER) -> int:
    """Remove this machine's copies named by `keys`, and any other (but `keep`) unused for
    `stale_after` seconds; the folder itself once empty. Returns how many copies went."""
    base = shipped_base()
    named = set(keys)
    now = time.time()
    removed = 0
    with contextlib.suppress(OSError):
        for entry in list(base.iterdir()):
            key = entry.name[1:].rsplit("-", 1)[0] if entry.name.startswith(".") else entry.name
            if key == keep and key not in named:
                continue
            try:
                stale = now - entry.stat().st_mtime > stale_after
            except OSError:
                continue
            if key in named or any(entry.name.startswith(f".{k}-") for k in named) or stale:
                shutil.rmtree(entry, ignore_errors=True)
                removed += not entry.name.startswith(".")
        base.rmdir()  # only when nothing else is there
    return removed


def _remote_run(work: Work) -> dict[str, Any]:
    """Runs on a Ray worker. While the job runs, its spend goes to the limiter actor every
    REPORT_EVERY seconds, so the driver's batch budget sees running jobs as it does locally."""
    import ray

    actor = work.extra.get("slots")
    shipped = work.extra.get("shipped")
    if shipped is not None:
        key, ref = shipped
        work = replace(work, workspace=unpack_workspace(key, ray.get(ref)))
    if actor is None:
        return _with_trace(run_work(work), shipped is not None)
    register_spend(work.batch_id, ActorSpend(actor, work.extra.get("max_cost")))  # the batch's --max-cost
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(REPORT_EVERY):
            actor.report.remote(work.job.id, live_cost(work.batch_id, work.job.id))

    reporter = threading.Thread(target=report, daemon=True, name="rlm-spend")
    reporter.start()
    try:
        return _with_trace(run_work(work, limiter=lambda name, n: ActorSlots(actor)), shipped is not None)
    finally:
        stop.set()
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(actor.done.remote(work.job.id))  # before the row reaches the driver: never counted twice


def _with_trace(row: dict[str, Any], shipped: bool) -> dict[str, Any]:
    """A job on a shipped copy sends its trace back with its row: the copy does not outlive the batch."""
    if shipped and row.get("trace"):
        with contextlib.suppress(OSError):
            row["_trace"] = Path(row["trace"]).read_bytes()
    return row


def _sweep_task(keys: list[str]) -> int:
    return sweep_shipped(keys)


@dataclass(eq=False)
class _Unsent:
    """Stands for a job's result when the job could not be sent at all."""

    reason: str


class RayExecutor:
    """Up to `jobs_at_once` jobs in flight on the cluster; results yielded as each finishes."""

    def __init__(self, jobs_at_once: int, concurrency: int, ship: bool = False, max_cost: float | None = None) -> None:
        self.ray = connect()
        self.n = max(1, jobs_at_once)
        self.ship = ship
        self.max_cost = max_cost
        try:
            self.slots = make_limiter(concurrency, max_cost)
            # A job mostly waits on the model: a quarter CPU each, so a 2-CPU node runs 8 (-j bounds the total).
            self.task = self.ray.remote(num_cpus=JOB_CPUS, max_retries=JOB_RETRIES)(_remote_run)
        except Exception as exc:  # noqa: BLE001 - Ray's own errors, as one line
            disconnect()
            raise ClusterError(f"could not set up the batch on the Ray cluster: {describe(exc)}") from None
        self.packed: dict[str, tuple[str, Any]] = {}
        self.batch = os.urandom(4).hex()  # this batch's copies are its own: removed when it ends
        self.last_cost = 0.0
        self.lost = False  # the head stopped answering: nothing more is asked of the cluster

    def _prepare(self, work: Work) -> Work:
        extra = dict(work.extra, slots=self.slots, max_cost=self.max_cost)
        if self.ship:
            if work.workspace not in self.packed:
                key, data = pack_workspace(work.workspace, self.batch)
                self.packed[work.workspace] = (key, self.ray.put(data))
            extra["shipped"] = self.packed[work.workspace]
        return replace(work, extra=extra)

    def run(self, works: Iterable[Work], may_start: Callable[[], str | None]) -> Iterator[Result]:
        ray = self.ray
        queue = list(works)
        running: dict[Any, Work] = {}
        checked = time.monotonic()
        while queue or running:
            yield from start_more(queue, running, self.n, may_start, self._submit)
            for unsent in [ref for ref in running if isinstance(ref, _Unsent)]:
                yield running.pop(unsent), {"status": RunStatus.FAILED.value, "error": f"could not send the job to the Ray cluster: "
                                                                       f"{unsent.reason}"}
            if not running:
                continue
            lost = None
            try:
                done, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_STEP)
            except Exception as exc:  # noqa: BLE001 - the cluster itself is gone
                lost, done = describe(exc), []
            if not done and time.monotonic() - checked >= HEAD_CHECK_EVERY:
                checked = time.monotonic()
                lost = lost or head_lost()
            if lost:  # what ran fails with the reason; what never started gets no row, so a rerun runs it
                self.lost = True
                for work in running.values():
                    yield work, {"status": RunStatus.FAILED.value, "error": f"the Ray cluster was lost: {lost}"}
                return
            for ref in done:
                work = running.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a job lost beyond its retries fails alone
                    row = {"status": RunStatus.FAILED.value, "error": f"Ray task failed: {describe(exc)}"}
                if self.ship:
                    self._bring_back(work, row)
                yield work, row

    def _submit(self, work: Work) -> Any:
        try:
            return self.task.remote(self._prepare(work))
        except Exception as exc:  # noqa: BLE001 - packing or sending (a full object store): this job fails alone
            return _Unsent(describe(exc))

    def _bring_back(self, work: Work, row: dict[str, Any]) -> None:
        """Paths in a shipped job's row name the driver's workspace, where its trace is written."""
        trace = row.pop("_trace", None)
        if row.get("workspace"):
            row["workspace"] = work.workspace
        if trace is not None and row.get("trace"):
            dest = Path(work.workspace) / "runs" / Path(row["trace"]).name
            try:
                dest.parent.mkdir(exist_ok=True)
                dest.write_bytes(trace)
                row["trace"] = str(dest)
            except OSError:
                row["trace"] = None  # the copy holding it is removed with the batch

    def live_cost(self, batch_id: str) -> float:
        if self.lost or not self.ray.is_initialized():  # closed: every job has finished and is in its row
            return self.last_cost if self.lost else 0.0
        try:
            self.last_cost = float(self.ray.get(self.slots.running_cost.remote(), timeout=10))
        except Exception:  # noqa: BLE001 - the limiter unreachable for now: the last figure stands
            pass
        return self.last_cost

    def _remove_copies(self) -> None:
        """This batch's shipped copies, removed on every live node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        keys = [key for key, _ in self.packed.values()]
        sweep = ray.remote(num_cpus=0, max_retries=0)(_sweep_task)
        refs = [sweep.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(keys)
                for node in ray.nodes() if node.get("Alive")]
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=SWEEP_TIMEOUT)
        for ref in pending:
            ray.cancel(ref, force=True)

    def close(self) -> None:
        close_idle_sandboxes()
        try:
            if self.packed and not self.lost and self.ray.is_initialized():
                self._remove_copies()
        except Exception:  # noqa: BLE001 - a node that cannot be asked now is swept by a later batch
            pass
        finally:
            disconnect()
