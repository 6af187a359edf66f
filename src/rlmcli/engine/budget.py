"""Budgets, enforced in one place for every call at every depth, and the usage ledger."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rlmcli.records import Limit


def dollars(cost: float | None, unknown: str = "cost unknown") -> str:
    """A cost for people: `unknown` when no price is known (never $0.0000), small sums in full."""
    if cost is None:
        return unknown
    return f"${cost:.6f}" if 0 < cost < 0.001 else f"${cost:.4f}"


MIN_REPLY_TOKENS = 256  # a request whose reply could not hold this many tokens is not sent


class BudgetExceeded(Exception):
    def __init__(self, limit: Limit, detail: str, batch: bool = False) -> None:
        super().__init__(f"budget reached: {limit} ({detail})")
        self.limit = limit
        self.batch = batch  # the batch's --max-cost, not this run's own limit


@dataclass
class Limits:
    max_iterations: int = 20
    max_depth: int = 1
    max_calls: int = 200
    max_tokens: int | None = None  # prompt + completion, all calls
    max_cost: float | None = None  # USD
    timeout: float | None = None  # wall seconds for the whole run
    concurrency: int = 16
    max_output_tokens: int = 4096  # a reply's cap while a token or cost limit is set


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
class Reservation:
    """One request's worst case, booked before it is sent and settled when it returns."""

    tokens: int = 0
    cost: float = 0.0
    cap: int | None = None  # the reply cap to send (None: no limit needs one)
    shared: float = 0.0  # booked against a SharedSpend


class SharedSpend:
    """US dollars several runs draw on together (a batch's --max-cost): what finished requests cost
    plus the worst case of those in flight, so concurrent jobs cannot overshoot it together."""

    def __init__(self, max_cost: float | None) -> None:
        self.max_cost = max_cost
        self.spent = 0.0
        self.pending = 0.0
        self._lock = threading.Lock()

    def book(self, prompt_cost: float, reply_price: float, cap: int, least: int) -> tuple[int, float]:
        """(reply tokens granted, dollars booked); BudgetExceeded when not even `least` fits."""
        with self._lock:
            grant = cap
            if self.max_cost is not None:
                left = self.max_cost - self.spent - self.pending - prompt_cost
                if reply_price > 0:
                    grant = min(cap, int(left / reply_price)) if left > 0 else -1
                elif left < 0:
                    grant = -1
                if grant < least:
                    raise BudgetExceeded(Limit.MAX_COST, f"the batch's ${self.max_cost:g} is spent or booked by "
                                         f"requests in flight (${self.spent:.6f} spent)", batch=True)
            booked = prompt_cost + grant * reply_price
            self.pending += booked
            return grant, booked

    def settle(self, booked: float, actual: float | None) -> None:
        with self._lock:
            self.pending -= booked
            self.spent += actual or 0.0

    def left(self) -> float | None:
        with self._lock:
            return None if self.max_cost is None else self.max_cost - self.spent - self.pending


@dataclass
class Budget:
    limits: Limits
    started: float = field(default_factory=time.monotonic)
    calls: list[CallRecord] = field(default_factory=list)
    reached: Limit | None = None  # the first limit that stopped the run
    pending: int = 0  # calls reserved and in flight: concurrent calls cannot overshoot max-calls
    pending_tokens: int = 0  # their worst-case tokens (prompt + reply cap)
    pending_cost: float = 0.0  # and dollars
    shared: SharedSpend | None = None  # a batch's spend, drawn on by this run too
    stopped_by_batch: bool = False
    warned: set[Limit] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _spent(self) -> tuple[int, float, int]:
        """(tokens, dollars, calls) of paid calls so far; hold the lock."""
        paid = [c for c in self.calls if not c.cache_hit]
        return sum(c.prompt_tokens + c.completion_tokens for c in paid), sum(c.cost or 0.0 for c in paid), len(paid)

    def _problem(self) -> tuple[Limit, str] | None:
        lim = self.limits
        tokens, dollars, calls = self._spent()
        if lim.timeout is not None and time.monotonic() - self.started >= lim.timeout:
            return Limit.TIMEOUT, f"{lim.timeout:g} s"
        if calls + self.pending >= lim.max_calls:
            return Limit.MAX_CALLS, f"{lim.max_calls} calls"
        if lim.max_tokens is not None and tokens >= lim.max_tokens:
            return Limit.MAX_TOKENS, f"{lim.max_tokens:,} tokens"
        if lim.max_cost is not None and dollars >= lim.max_cost:
            return Limit.MAX_COST, f"${lim.max_cost:g}"
        return None

    def check(self) -> None:
        """Raise BudgetExceeded when any limit is used up."""
        with self._lock:
            problem = self._problem()
            if problem:
                self.reached = self.reached or problem[0]
                raise BudgetExceeded(*problem)

    def reserve(self, prompt_tokens: int = 0, prices: tuple[float, float] | None = None,
                reply_cap: int | None = None) -> Reservation:
        """Book one request before it is sent: its prompt plus the largest reply the limits left can
        pay for (at most max_output_tokens) must fit in what is left after the requests in flight,
        or BudgetExceeded. `prices` are dollars per prompt and per reply token (None: unknown, and
        then max-cost cannot apply to this request)."""
        lim = self.limits
        with self._lock:
            problem = self._problem()
            tokens, dollars, _ = self._spent()
            cap = min(lim.max_output_tokens, reply_cap or lim.max_output_tokens)
            least = min(MIN_REPLY_TOKENS, cap)
            grant, limited = cap, False
            if problem is None and lim.max_tokens is not None:
                limited = True
                grant = min(grant, lim.max_tokens - tokens - self.pending_tokens - prompt_tokens)
                if grant < least:
                    problem = (Limit.MAX_TOKENS, f"{lim.max_tokens:,} tokens: the next request's {prompt_tokens:,} "
                                             f"prompt tokens and a reply do not fit in what is left")
            price_in, price_out = prices or (0.0, 0.0)
            if problem is None and prices is not None and lim.max_cost is not None:
                limited = True
                left = lim.max_cost - dollars - self.pending_cost - prompt_tokens * price_in
                if price_out > 0:
                    grant = min(grant, int(left / price_out) if left > 0 else -1)
                elif left < 0:
                    grant = -1
                if grant < least:
                    problem = (Limit.MAX_COST, f"${lim.max_cost:g}: the next request (${prompt_tokens * price_in:.6f} "
                                           f"of prompt and a reply) does not fit in the ${max(0.0, left + prompt_tokens * price_in):.6f} left")
            shared = 0.0
            if problem is None and prices is not None and self.shared is not None \
                    and self.shared.max_cost is not None:
                limited = True
                try:
                    grant, shared = self.shared.book(prompt_tokens * price_in, price_out, grant, least)
                except BudgetExceeded as exc:
                    self.stopped_by_batch = True
                    self.reached = self.reached or exc.limit
                    raise
            if problem:
                self.reached = self.reached or problem[0]
                raise BudgetExceeded(*problem)
            reservation = Reservation(cap=grant if limited else None, shared=shared)
            if limited:
                reservation.tokens = prompt_tokens + grant
                reservation.cost = prompt_tokens * price_in + grant * price_out
            self.pending += 1
            self.pending_tokens += reservation.tokens
            self.pending_cost += reservation.cost
            return reservation

    def release(self, reservation: Reservation | None = None) -> None:
        """A reserved request that cost nothing (it failed, or was never sent)."""
        with self._lock:
            self._unbook(reservation or Reservation(), None)

    def _unbook(self, reservation: Reservation, actual: float | None) -> None:
        self.pending -= 1
        self.pending_tokens -= reservation.tokens
        self.pending_cost -= reservation.cost
        if self.shared is not None and self.shared.max_cost is not None:
            self.shared.settle(reservation.shared, actual)

    def new_warnings(self, threshold: float = 0.8) -> list[tuple[Limit, float, float]]:
        """Limits that have just passed `threshold` of their maximum: (limit, used, max), once each."""
        lim = self.limits
        with self._lock:
            paid = [c for c in self.calls if not c.cache_hit]
            candidates = [(Limit.MAX_CALLS, float(len(paid)), float(lim.max_calls))]
            if lim.max_tokens is not None:
                candidates.append((Limit.MAX_TOKENS, float(sum(c.prompt_tokens + c.completion_tokens for c in paid)),
                                   float(lim.max_tokens)))
            if lim.max_cost is not None:
                candidates.append((Limit.MAX_COST, sum(c.cost or 0.0 for c in paid), lim.max_cost))
            if lim.timeout is not None:
                candidates.append((Limit.TIMEOUT, time.monotonic() - self.started, lim.timeout))
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

    def hit(self, limit: Limit) -> None:
        with self._lock:
            self.reached = self.reached or limit

    def add(self, record: CallRecord, reservation: Reservation | None = None) -> None:
        with self._lock:
            self.calls.append(record)
            if reservation is not None:
                self._unbook(reservation, None if record.cache_hit else record.cost)

    def usage(self, workspace_tokens: int = 0, price_known: bool = True) -> dict[str, Any]:
        """Totals, per model and per depth, and tokens read ÷ workspace tokens. A run without calls
        cost $0 only when its models' prices are known (`price_known`); else its cost is unknown."""
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
                "cost": round(sum(priced), 6) if priced or (not group and price_known) else None,
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
