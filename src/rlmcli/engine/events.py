"""Typed events the engine emits to one observer. The engine never renders anything itself.

Every event carries the run it belongs to (`run_id`: the root run's id, or `<root>/<call>` for
a recursive run) and `parent_id`, the sub-call that started that run (None at the root), so a
view can place a child run under the exact `rlm_query` node that made it. The live tree, the
plain lines, the JSONL trace and the HTML page all consume these same types; a trace file is
read back into them with `from_dict`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


@dataclass
class Event:
    run_id: str = ""
    parent_id: int | None = None
    depth: int = 0
    time: float = field(default_factory=time.time)
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    question: str = ""
    model: str = ""
    sub_model: str = ""
    workspace: str = ""
    sandbox: list[str] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    follows: str | None = None  # the run this one continues (ask -c, chat)


@dataclass
class IterationStarted(Event):
    kind: ClassVar[str] = "iteration_started"
    iteration: int = 0


@dataclass
class ModelDelta(Event):
    """A streamed piece of the root model's reply; `reset` means a retry starts the text over."""

    kind: ClassVar[str] = "model_delta"
    iteration: int = 0
    text: str = ""
    reset: bool = False


@dataclass
class ModelText(Event):
    kind: ClassVar[str] = "model_text"
    iteration: int = 0
    text: str = ""


@dataclass
class CodeCell(Event):
    kind: ClassVar[str] = "code_cell"
    iteration: int = 0
    index: int = 0
    code: str = ""


@dataclass
class CellOutput(Event):
    """`output` is everything kept for the trace; `shown` is what the model saw."""

    kind: ClassVar[str] = "cell_output"
    iteration: int = 0
    index: int = 0
    output: str = ""
    shown: str = ""
    error: bool = False
    duration: float = 0.0
    changed: list[str] = field(default_factory=list)
    restarted: bool = False


@dataclass
class Notice(Event):
    """The engine told the model something on its own account (a nudge, a hint, a refusal)."""

    kind: ClassVar[str] = "notice"
    iteration: int = 0
    reason: str = ""  # no-code | early-final | sequential-llm-query | context-trimmed | ...
    text: str = ""


@dataclass
class SubcallStarted(Event):
    kind: ClassVar[str] = "subcall_started"
    call_id: int = 0
    call: str = ""  # llm_query | llm_batch | rlm_query | look
    model: str = ""
    size: int = 0  # characters of the prompt, or prompts in a batch


@dataclass
class SubcallProgress(Event):
    kind: ClassVar[str] = "subcall_progress"
    call_id: int = 0
    call: str = ""
    done: int = 0
    total: int = 0


@dataclass
class SubcallFinished(Event):
    kind: ClassVar[str] = "subcall_finished"
    call_id: int = 0
    call: str = ""
    ok: bool = True
    failed: int = 0
    done: int = 0
    total: int = 0
    error: str | None = None


@dataclass
class ModelCall(Event):
    """One model request that finished (or was served from the cache)."""

    kind: ClassVar[str] = "model_call"
    call_id: int | None = None  # the sub-call it served; None for the root model's own calls
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency: float = 0.0
    cost: float | None = None
    cache_hit: bool = False
    retries: int = 0
    prompt: str = ""  # the last message sent, bounded
    reply: str = ""  # bounded


@dataclass
class ModelRetry(Event):
    """A failed request that will be tried again after `delay` seconds."""

    kind: ClassVar[str] = "model_retry"
    call_id: int | None = None
    model: str = ""
    attempt: int = 0  # the retry about to happen: 1, 2, ...
    attempts: int = 0  # retries allowed
    delay: float = 0.0
    reason: str = ""  # '429', '503', 'timeout', 'connection refused', ...


@dataclass
class ModelError(Event):
    """A model request that failed for good (after retries, or at once when retrying cannot help)."""

    kind: ClassVar[str] = "model_error"
    call_id: int | None = None
    model: str = ""
    error_kind: str = ""
    message: str = ""


@dataclass
class BudgetWarning(Event):
    kind: ClassVar[str] = "budget_warning"
    limit: str = ""
    used: float = 0.0
    max: float = 0.0


@dataclass
class FinalAnswer(Event):
    kind: ClassVar[str] = "final_answer"
    answer: str = ""
    status: str = ""
    limit: str | None = None


@dataclass
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str = ""
    limit: str | None = None
    error: str | None = None
    iterations: int = 0
    seconds: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass
class Citations(Event):
    """The answer's citations as checked once the run ended (rlmcli.answer): each a dict with
    text, doc, page, line, status (verified | unchecked | failed), note and quote. Written to the
    trace, so `rlm trace` and the HTML page show the same marks as the Sources list."""

    kind: ClassVar[str] = "citations"
    citations: list[dict[str, Any]] = field(default_factory=list)


KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in (
    RunStarted, IterationStarted, ModelDelta, ModelText, CodeCell, CellOutput, Notice, SubcallStarted,
    SubcallProgress, SubcallFinished, ModelCall, ModelRetry, ModelError, BudgetWarning, FinalAnswer, RunFinished,
    Citations)}

Observer = Callable[[Event], None]


def from_dict(raw: dict[str, Any]) -> Event | None:
    """An event from its `to_dict()` form; None for a kind this version does not know."""
    cls = KINDS.get(str(raw.get("kind")))
    if cls is None:
        return None
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})


class Recorder:
    """An observer that keeps every event (for tests and replays)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


def fanout(*observers: Observer) -> Observer:
    """One observer that hands each event to several."""
    def emit(event: Event) -> None:
        for observer in observers:
            observer(event)
    return emit
