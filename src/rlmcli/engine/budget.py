"""Budgets, enforced in one place for every call at every depth, and the usage ledger."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


class BudgetExceeded(Exception):
    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"budget reached: {limit} ({detail})")
        self.limit = limit


@dataclass
class Limits:
    max_iterations: int = 20
    max_depth: int = 1
    max_calls: int = 200
    max_tokens: int | None = None  # prompt + completion, all calls
    max_cost: float | None = None  # USD
    timeout: float | None = None  # wall seconds for the whole run
    concurrency: int = 16


@dataclass
class CallRecord:
    model: str
    depth: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency: float
    cost: float | None  # None: litellm has no price for this model
    cache_hit: bool
    retries: int = 0


@dataclass
class Budget:
    limits: Limits
    started: float = field(default_factory=time.monotonic)
    calls: list[CallRecord] = field(default_factory=list)
    reached: str | None = None  # the first limit that stopped the run
    pending: int = 0  # calls reserved and in flight: concurrent calls cannot overshoot max-calls
    warned: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, reserve: bool = False) -> None:
        """Raise BudgetExceeded when any limit is used up; `reserve` also books one call atomically."""
        lim = self.limits
        with self._lock:
            paid = [c for c in self.calls if not c.cache_hit]
            problems = []
            if lim.timeout is not None and time.monotonic() - self.started >= lim.timeout:
                problems.append(("timeout", f"{lim.timeout:g} s"))
            if len(paid) + self.pending >= lim.max_calls:
                problems.append(("max-calls", f"{lim.max_calls} calls"))
            if lim.max_tokens is not None and sum(c.prompt_tokens + c.completion_tokens for c in paid) >= lim.max_tokens:
                problems.append(("max-tokens", f"{lim.max_tokens:,} tokens"))
            if lim.max_cost is not None and sum(c.cost or 0.0 for c in paid) >= lim.max_cost:
                problems.append(("max-cost", f"${lim.max_cost:g}"))
            if problems:
                limit, detail = problems[0]
                self.reached = self.reached or limit
                raise BudgetExceeded(limit, detail)
            if reserve:
                self.pending += 1

    def release(self) -> None:
        with self._lock:
            self.pending -= 1

    def new_warnings(self, threshold: float = 0.8) -> list[tuple[str, float, float]]:
        """Limits that have just passed `threshold` of their maximum: (limit, used, max), once each."""
        lim = self.limits
        with self._lock:
            paid = [c for c in self.calls if not c.cache_hit]
            candidates = [("max-calls", float(len(paid)), float(lim.max_calls))]
            if lim.max_tokens is not None:
                candidates.append(("max-tokens", float(sum(c.prompt_tokens + c.completion_tokens for c in paid)),
                                   float(lim.max_tokens)))
            if lim.max_cost is not None:
                candidates.append(("max-cost", sum(c.cost or 0.0 for c in paid), lim.max_cost))
            if lim.timeout is not None:
                candidates.append(("timeout", time.monotonic() - self.started, lim.timeout))
            fresh = [(name, used, top) for name, used, top in candidates
                     if top > 0 and used >= threshold * top and name not in self.warned]
            self.warned.update(name for name, _, _ in fresh)
        return fresh

    def deadline(self) -> float | None:
        """The monotonic time at which the time budget runs out, if there is one."""
        return None if self.limits.timeout is None else self.started + self.limits.timeout

    def remaining_time(self) -> float | None:
        if self.limits.timeout is None:
            return None
        return max(0.0, self.limits.timeout - (time.monotonic() - self.started))

    def hit(self, limit: str) -> None:
        with self._lock:
            self.reached = self.reached or limit

    def add(self, record: CallRecord, reserved: bool = False) -> None:
        with self._lock:
            self.calls.append(record)
            if reserved:
                self.pending -= 1

    def usage(self, workspace_tokens: int = 0) -> dict[str, Any]:
        """Totals, per model and per depth, and tokens read ÷ workspace tokens."""
        with self._lock:
            calls = list(self.calls)

        def total(group: list[CallRecord]) -> dict[str, Any]:
            priced = [c.cost for c in group if c.cost is not None]
            return {
                "calls": len(group),
                "cache_hits": sum(c.cache_hit for c in group),
                "prompt_tokens": sum(c.prompt_tokens for c in group),
                "completion_tokens": sum(c.completion_tokens for c in group),
                "cached_tokens": sum(c.cached_tokens for c in group),
                "cost": round(sum(priced), 6) if priced or not group else None,
                "cost_unknown_calls": sum(c.cost is None for c in group),
                "retries": sum(c.retries for c in group),
            }

        by_model: dict[str, list[CallRecord]] = defaultdict(list)
        by_depth: dict[int, list[CallRecord]] = defaultdict(list)
        for c in calls:
            by_model[c.model].append(c)
            by_depth[c.depth].append(c)
        summary = total(calls)
        read = summary["prompt_tokens"]
        summary["read_ratio"] = round(read / workspace_tokens, 4) if workspace_tokens else None
        summary["per_model"] = {m: total(g) for m, g in sorted(by_model.items())}
        summary["per_depth"] = {str(d): total(g) for d, g in sorted(by_depth.items())}
        return summary

    def call_list(self) -> list[dict[str, Any]]:
        """Every call in order, for `--json`: which model, depth, tokens, cost, latency, cached."""
        with self._lock:
            calls = list(self.calls)
        return [{"model": c.model, "depth": c.depth, "prompt_tokens": c.prompt_tokens,
                 "completion_tokens": c.completion_tokens, "cost": c.cost, "latency": round(c.latency, 3),
                 "cached": c.cache_hit, "retries": c.retries} for c in calls]
