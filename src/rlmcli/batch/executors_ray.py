"""Batch jobs as Ray tasks: the same `Work` and `run_work` as the local executor, on a cluster.

The driver keeps the results file; tasks return rows. Provider requests are bounded across the
cluster by one limiter actor. Workspaces reach workers on a shared filesystem (same path on every
machine), or, with `ship=True`, as a tarball in Ray's object store unpacked once per machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from rlmcli.batch.executors import Result, start_more
from rlmcli.batch.work import Work, close_idle_sandboxes, live_cost, register_spend, run_work
from rlmcli.cluster import ActorSlots, ActorSpend, connect, disconnect, make_limiter

SHIPPED_DIR = "rlm-ray-workspaces"  # under the worker machine's temp dir
JOB_CPUS = 0.25
REPORT_EVERY = 0.5  # seconds between a running job's spend reports


def _shipped(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """What a worker needs: pages, text, index, manifest; not the lock, half-built documents or traces."""
    top = info.name.split("/")[1] if info.name.startswith("./") and info.name.count("/") >= 1 else ""
    if info.name.endswith(".lock") or top in (".tmp", "runs"):
        return None
    return info


def pack_workspace(root: str) -> tuple[str, bytes]:
    """(key, tar bytes) of a workspace; the key changes whenever its manifest does."""
    manifest = Path(root, "manifest.json").read_bytes()
    key = hashlib.sha256(root.encode() + b"\0" + manifest).hexdigest()[:20]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root, arcname=".", filter=_shipped)
    return key, buf.getvalue()


def unpack_workspace(key: str, data: bytes) -> str:
    """Unpack once per machine (atomic rename, so concurrent tasks never see half a workspace)."""
    base = Path(tempfile.gettempdir()) / SHIPPED_DIR
    target = base / key
    if (target / "manifest.json").is_file():
        return str(target)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=base))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        try:
            tar.extractall(staging, filter="data")  # our own tarball, still extracted with the safe filter
        except TypeError:  # Python before 3.10.12 has no filters; the tarball is the driver's own
            tar.extractall(staging)  # noqa: S202
    try:
        os.rename(staging, target)
    except OSError:  # another task won the race
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


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
        return run_work(work)
    register_spend(work.batch_id, ActorSpend(actor, work.extra.get("max_cost")))  # the batch's --max-cost
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(REPORT_EVERY):
            actor.report.remote(work.job.id, live_cost(work.batch_id, work.job.id))

    reporter = threading.Thread(target=report, daemon=True, name="rlm-spend")
    reporter.start()
    try:
        return run_work(work, limiter=lambda name, n: ActorSlots(actor))
    finally:
        stop.set()
        ray.get(actor.done.remote(work.job.id))  # before the row reaches the driver: never counted twice


class RayExecutor:
    """Up to `jobs_at_once` jobs in flight on the cluster; results yielded as each finishes."""

    def __init__(self, jobs_at_once: int, concurrency: int, ship: bool = False, max_cost: float | None = None) -> None:
        self.ray = connect()
        self.n = max(1, jobs_at_once)
        self.ship = ship
        self.max_cost = max_cost
        self.slots = make_limiter(concurrency, max_cost)
        # A job mostly waits on the model: a quarter CPU each, so a 2-CPU node runs 8 (-j bounds the total).
        self.task = self.ray.remote(num_cpus=JOB_CPUS, max_retries=0)(_remote_run)
        self.packed: dict[str, tuple[str, Any]] = {}

    def _prepare(self, work: Work) -> Work:
        extra = dict(work.extra, slots=self.slots, max_cost=self.max_cost)
        if self.ship:
            if work.workspace not in self.packed:
                key, data = pack_workspace(work.workspace)
                self.packed[work.workspace] = (key, self.ray.put(data))
            extra["shipped"] = self.packed[work.workspace]
        return replace(work, extra=extra)

    def run(self, works: Iterable[Work], may_start: Callable[[], str | None]) -> Iterator[Result]:
        ray = self.ray
        queue = list(works)
        running: dict[Any, Work] = {}
        while queue or running:
            yield from start_more(queue, running, self.n, may_start, lambda w: self.task.remote(self._prepare(w)))
            if not running:
                continue
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                work = running.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a lost worker fails its job alone
                    row = {"status": "failed", "error": f"Ray task failed: {str(exc).strip().splitlines()[0]}"}
                if self.ship and row.get("workspace"):
                    row["workspace"] = work.workspace  # the driver's path, not the worker's copy
                yield work, row

    def live_cost(self, batch_id: str) -> float:
        if not self.ray.is_initialized():  # closed: every job has finished and is in its row
            return 0.0
        return float(self.ray.get(self.slots.running_cost.remote()))

    def peak_requests(self) -> int:
        """Most provider requests that were in flight at once, cluster-wide."""
        return int(self.ray.get(self.slots.high_water.remote()))

    def close(self) -> None:
        close_idle_sandboxes()
        disconnect()
