"""Traces on disk: `<workspace>/runs/<run-id>.jsonl`, one event per line, full code and outputs."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rlmcli.engine.events import Event, FinalAnswer, ModelDelta, Notice, RunFinished, RunStarted, from_dict
from rlmcli.errors import RlmError

TRACE_MAX_BYTES = 32 << 20  # of one run's trace (every depth); then only its end is recorded


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()


class TraceWriter:
    """An observer appending every event to the run's JSONL file as it happens (a crash keeps them).

    It never stops the run: text that is not valid Unicode is written with '?' in its place, a
    write that fails ends the trace there (`error` says why), and past `max_bytes` a notice says
    the trace was cut and only the run's answer and end are recorded."""

    def __init__(self, path: Path, max_bytes: int = TRACE_MAX_BYTES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.written = 0
        self.cut = False
        self.error: str | None = None
        self._fh: BinaryIO | None = open(path, "ab")

    def __call__(self, event: Event) -> None:
        if isinstance(event, ModelDelta) or self._fh is None:
            return  # the whole reply follows as model_text; deltas would only bloat the file
        try:
            data = self._line(event)
            if self.written + len(data) > self.max_bytes and not self._is_end(event):
                if not self.cut:
                    self.cut = True
                    note = Notice(run_id=event.run_id, reason="trace-cut", text=(
                        f"the trace reached its {self.max_bytes >> 20} MB cap: later events are not recorded "
                        "(the run went on); its answer and end follow"))
                    self._write(self._line(note))
                return
            self._write(data)
        except Exception as exc:  # noqa: BLE001 - the trace must never crash the run
            self.error = f"{type(exc).__name__}: {exc}"
            self.close()

    @staticmethod
    def _line(event: Event) -> bytes:
        return (json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n").encode("utf-8", "replace")

    @staticmethod
    def _is_end(event: Event) -> bool:
        return isinstance(event, (FinalAnswer, RunFinished)) and event.depth == 0

    def _write(self, data: bytes) -> None:
        assert self._fh is not None
        self._fh.write(data)
        self._fh.flush()
        self.written += len(data)

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None


def load(path: Path) -> list[Event]:
    events = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                raw = json.loads(line)
                event = from_dict(raw) if isinstance(raw, dict) else None
            except (ValueError, TypeError):
                continue  # a line cut by a crash
            if event is not None:
                events.append(event)
    return events


@dataclass
class RunSummary:
    run_id: str
    path: Path
    started: float
    question: str
    status: str  # answered | partial | failed | unfinished (the process died mid-run)
    cost: float | None
    seconds: float | None
    error: str | None = None
    limit: str | None = None


def summarize(path: Path, events: list[Event]) -> RunSummary:
    started = next((e for e in events if isinstance(e, RunStarted) and e.depth == 0), None)
    finished = next((e for e in events if isinstance(e, RunFinished) and e.depth == 0), None)
    usage = finished.usage if finished else {}
    return RunSummary(
        run_id=path.stem, path=path, started=started.time if started else path.stat().st_mtime,
        question=started.question if started else "",
        status=finished.status if finished else "unfinished",
        cost=usage.get("cost"), seconds=finished.seconds if finished else None,
        error=finished.error if finished else "the run never finished (the process was killed?)",
        limit=finished.limit if finished else None)


def list_runs(workspace_root: Path) -> list[RunSummary]:
    return [summarize(path, load(path)) for path in sorted((workspace_root / "runs").glob("*.jsonl"))]


def find_run(workspace_root: Path, run: str) -> Path:
    """A run by id, unique prefix or last part (`6f5d2a`); 'last' is the newest."""
    paths = sorted((workspace_root / "runs").glob("*.jsonl"))
    if run == "last" and paths:
        return paths[-1]
    matches = ([p for p in paths if p.stem == run] or [p for p in paths if p.stem.startswith(run)]
               or [p for p in paths if p.stem.endswith("-" + run)])  # the short name `rlm runs` shows
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RlmError(f"no run {run!r} in {workspace_root} (see `rlm runs`)")
    raise RlmError(f"{run!r} matches several runs: {', '.join(p.stem for p in matches[:5])}")

