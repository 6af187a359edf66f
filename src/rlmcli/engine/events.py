"""Typed events the engine emits to one observer. The engine never renders anything itself."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class Event:
    kind: str
    depth: int = 0
    time: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The kinds, in the order a run produces them.
RUN_STARTED = "run_started"  # data: question, model, sub_model, workspace, limits, sandbox layers
ITERATION_STARTED = "iteration_started"  # data: iteration
MODEL_DELTA = "model_delta"  # data: iteration, text (a streamed piece), reset (a retry starts over)
MODEL_TEXT = "model_text"  # data: text (the root model's whole reply)
CODE_CELL = "code_cell"  # data: iteration, index, code
CELL_OUTPUT = "cell_output"  # data: output (full), shown (what the model saw), error, duration, changed
SUBCALL_STARTED = "subcall_started"  # data: id, kind (llm_query | llm_batch | rlm_query), model, size
SUBCALL_PROGRESS = "subcall_progress"  # data: id, kind, done, total (llm_batch, as items finish)
SUBCALL_FINISHED = "subcall_finished"  # data: id, kind, ok, error, done, total
MODEL_CALL = "model_call"  # data: model, prompt_tokens, completion_tokens, cached_tokens, latency, cost, cache_hit
BUDGET_WARNING = "budget_warning"  # data: limit, used, max
FINAL_ANSWER = "final_answer"  # data: answer, status
RUN_FINISHED = "run_finished"  # data: status, limit, usage, seconds


class Observer(Protocol):
    def __call__(self, event: Event) -> None: ...


class Recorder:
    """An observer that keeps every event (for tests and for the JSONL trace writer)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]
