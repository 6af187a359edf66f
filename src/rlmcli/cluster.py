"""Reaching a Ray cluster (the optional `rlm[ray]` extra), shared by batch and ingest.

Ray's convention: connect to RAY_ADDRESS when it is set, else start a local instance. Ray itself
retries an unreachable head for minutes; we check the address with a plain TCP connect first and
bound `ray.init` so a dead head is one clear line within 30 s. Workers get the provider keys and
rlm's own settings from this process's environment (Ray's runtime_env), never through job data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

from rlmcli.errors import RlmError, UsageError

CONNECT_TIMEOUT = 5.0  # the TCP check of the head's port
INIT_TIMEOUT = 20.0  # ray.init after the port answered
# What a worker needs from our environment: provider keys and endpoints, rlm's and litellm's settings.
SHIPPED_ENV = re.compile(r"^(RLM_|LITELLM_|TIKTOKEN_|OPENAI_|ANTHROPIC_|AZURE_|GEMINI_|GOOGLE_|MISTRAL_|GROQ_|"
                         r"TOGETHER|DEEPSEEK_|OPENROUTER_|XAI_|COHERE_|AWS_|OLLAMA_)|_API_KEY$|_API_BASE$")


class ClusterError(RlmError):
    """The Ray cluster could not be reached or used."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs the optional extra: pip install 'rlmcli[ray]'") from None
    return ray


def head_address() -> tuple[str, int] | None:
    """(host, port) of RAY_ADDRESS to check before connecting; None for a local start or 'auto'."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if not address or address == "auto" or address.startswith("local"):
        return None
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"RAY_ADDRESS={address!r} is not HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def _check_port(host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise ClusterError(f"cannot reach the Ray head at {host}:{port} (RAY_ADDRESS): {reason}. "
                           "Is `ray start --head` running there, and the port open?") from None


def _token_available() -> bool:
    """Whether Ray's client would find an authentication token (as Ray itself looks for one)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return os.path.isfile(path)


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if SHIPPED_ENV.search(k)}


def connect(local_cpus: int | None = None) -> Any:
    """Connect (or start locally) once per process; returns the `ray` module."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    target = head_address()
    if target:
        _check_port(*target)
    # Ray reads these when it is imported, so they are set first.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a machine with no internet
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # the core's retry warnings, one per second
    if address and "RAY_AUTH_MODE" not in os.environ and _token_available():
        # A head started where a token exists (`ray start` does this by itself) requires it, but a
        # client only sends it in token mode; a head without authentication accepts it anyway.
        os.environ["RAY_AUTH_MODE"] = "token"
    ray = _ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True,
                              "runtime_env": {"env_vars": worker_env()}}
    if not address:
        # "local": a new instance even when a `ray start` head (or a stale record of one) is here.
        kwargs.update(address="local", num_cpus=local_cpus or os.cpu_count() or 1, include_dashboard=False)
    where = f"the Ray head at {address} (RAY_ADDRESS)" if address else "a local Ray instance"
    hint = (" (a cluster with token authentication also needs its token: RAY_AUTH_TOKEN, or the file "
            "~/.ray/auth_token)" if address else "")
    try:
        with _deadline(INIT_TIMEOUT, f"could not connect to {where} within {INIT_TIMEOUT:.0f} s{hint}"):
            ray.init(**kwargs)
    except ClusterError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray's own errors, as one line
        first = str(exc).strip().splitlines()
        raise ClusterError(f"could not connect to {where}: {first[0] if first else type(exc).__name__}") from None
    return ray


def disconnect() -> None:
    """Leave the cluster; a local instance this process started stops with it (its agents would
    otherwise outlive us, since the CLI skips the interpreter's teardown)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def _deadline(seconds: float, message: str) -> Iterator[None]:
    """SIGALRM on the main thread (where Ray wants to be initialised); elsewhere no deadline."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise ClusterError(message)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def make_limiter(concurrency: int, max_cost: float | None = None) -> Any:
    """One actor for the batch across the whole cluster: it bounds provider requests in flight,
    adds up what running jobs have spent, and books each request's worst case against the
    batch's --max-cost (a SharedSpend), so jobs on many machines cannot overshoot it together."""
    ray = connect()

    @ray.remote(num_cpus=0)
    class Slots:
        def __init__(self, n: int, max_cost: float | None) -> None:
            import asyncio

            from rlmcli.engine.budget import SharedSpend

            self.free = asyncio.Semaphore(max(1, n))
            self.busy = 0
            self.peak = 0
            self.spend: dict[str, float] = {}  # running job -> US dollars so far
            self.ledger = SharedSpend(max_cost)

        async def book(self, prompt_cost: float, reply_price: float, cap: int, least: int) -> tuple[int, float] | None:
            from rlmcli.engine.budget import BudgetExceeded

            try:
                return self.ledger.book(prompt_cost, reply_price, cap, least)
            except BudgetExceeded:
                return None

        async def settle(self, booked: float, actual: float | None) -> None:
            self.ledger.settle(booked, actual)

        async def left(self) -> float | None:
            return self.ledger.left()

        async def acquire(self) -> None:
            await self.free.acquire()
            self.busy += 1
            self.peak = max(self.peak, self.busy)

        async def release(self) -> None:
            self.busy -= 1
            self.free.release()

        async def high_water(self) -> int:
            return self.peak

        async def report(self, job: str, cost: float) -> None:
            self.spend[job] = cost

        async def done(self, job: str) -> None:
            self.spend.pop(job, None)

        async def running_cost(self) -> float:
            return sum(self.spend.values())

    return Slots.remote(concurrency, max_cost)  # type: ignore[attr-defined]


class ActorSpend:
    """The limiter actor's ledger, as a job's Budget expects of its `shared` (a SharedSpend)."""

    def __init__(self, actor: Any, max_cost: float | None) -> None:
        self.actor = actor
        self.max_cost = max_cost

    def book(self, prompt_cost: float, reply_price: float, cap: int, least: int) -> tuple[int, float]:
        import ray

        from rlmcli.engine.budget import BudgetExceeded

        granted = ray.get(self.actor.book.remote(prompt_cost, reply_price, cap, least))
        if granted is None:
            raise BudgetExceeded("max-cost", f"the batch's ${self.max_cost:g} is spent or booked by requests in "
                                 "flight", batch=True)
        return int(granted[0]), float(granted[1])

    def settle(self, booked: float, actual: float | None) -> None:
        import ray

        ray.get(self.actor.settle.remote(booked, actual))

    def left(self) -> float | None:
        import ray

        left = ray.get(self.actor.left.remote())
        return None if left is None else float(left)


class ActorSlots:
    """A context manager over the limiter actor, as the gateway expects of its `slots`."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def __enter__(self) -> ActorSlots:
        import ray

        ray.get(self.actor.acquire.remote())
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        ray.get(self.actor.release.remote())
