"""Reaching a Ray cluster (the optional `rlm[ray]` extra), shared by batch and ingest.

Ray's convention: connect to RAY_ADDRESS when it is set, else start a local instance. Before
`ray.init` the head's GCS is asked one gRPC call with a deadline (gcs_probe.py): a closed, silent or
foreign port is one clear line, and the answer says whether the head requires a token, which sets
`RAY_AUTH_MODE` for this process (never a token file that happens to exist). `ray.init` itself runs
with a deadline, on a thread the main thread waits for when joining a cluster, so neither a native
hang nor Ctrl-C/SIGTERM can keep the command alive. A local instance lives in a temporary directory with a token held in
memory, and leaves nothing behind. Ray's own logging goes to a file under RLM_HOME/logs, not stderr.
Workers get the provider keys and rlm's own settings from this process's environment (Ray's
runtime_env), never through job data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlmcli.errors import RlmError, UsageError

PROBE_TIMEOUT = 10.0  # the head's GCS must answer one call within this
INIT_TIMEOUT = 30.0  # ray.init after the head answered
LOCAL_START_TIMEOUT = 120.0  # starting a local instance on a busy machine
WAIT_STEP = 1.0  # results are awaited in steps, so Ctrl-C and SIGTERM reach the main thread at once
HEAD_CHECK_EVERY = 5.0  # seconds between asking the head's GCS, while waiting, whether it still answers
KEEP_LOGS = 20  # Ray log files kept under RLM_HOME/logs
SHOW_LOG = False  # set by `rlm --debug`: name Ray's log file on stderr
# What a worker needs from our environment: provider keys and endpoints, rlm's and litellm's settings.
SHIPPED_ENV = re.compile(r"^(RLM_|LITELLM_|TIKTOKEN_|OPENAI_|ANTHROPIC_|AZURE_|GEMINI_|GOOGLE_|MISTRAL_|GROQ_|"
                         r"TOGETHER|DEEPSEEK_|OPENROUTER_|XAI_|COHERE_|AWS_|OLLAMA_)|_API_KEY$|_API_BASE$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# What connect() changed in this process, undone by disconnect().
_session: dict[str, Any] = {}


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


def token_source() -> tuple[str | None, str]:
    """(token, where it came from), looked up as Ray does: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH,
    ~/.ray/auth_token; (None, "") when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named) if named else Path.home() / ".ray" / "auth_token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        if named:
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH={named}: cannot read the token ({exc.strerror or exc})") from None
        return None, ""
    return (token, f"RAY_AUTH_TOKEN_PATH ({path})" if named else str(path)) if token else (None, "")


def _head_auth_mode(host: str, port: int) -> str:
    """'token' or 'disabled': what the head requires, asked in its own protocol."""
    from importlib.metadata import version

    from rlmcli.gcs_probe import UNAUTHENTICATED, ProbeError, ask

    where = f"the Ray head at {host}:{port} (RAY_ADDRESS)"
    try:
        answer = ask(host, port, None, PROBE_TIMEOUT)
        if answer.status == UNAUTHENTICATED:
            token, source = token_source()
            if not token:
                raise ClusterError(f"{where} requires a token (Ray's token authentication): set RAY_AUTH_TOKEN to it, "
                                   "or RAY_AUTH_TOKEN_PATH to a file holding it (`ray get-auth-token` on the head prints it)")
            answer = ask(host, port, token, PROBE_TIMEOUT)
            if answer.status == UNAUTHENTICATED:
                raise ClusterError(f"{where} rejected the token from {source}")
            mode = "token"
        else:
            mode = "disabled"
    except ProbeError as exc:
        raise ClusterError(f"cannot reach {where}: {exc}. Is `ray start --head` running there, and is this its "
                           "port?") from None
    if answer.status != 0:
        raise ClusterError(f"{where} answered with gRPC status {answer.status} ({answer.message or 'no message'}); "
                           f"it must run the same Ray as here ({version('ray')})")
    return mode


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if SHIPPED_ENV.search(k)}


def _setenv(name: str, value: str | None) -> None:
    """Set (or, with None, remove) a variable for this session; disconnect() restores it."""
    _session.setdefault("env", {}).setdefault(name, os.environ.get(name))
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def log_path() -> Path | None:
    """This process's Ray log file (Ray's own messages, kept off stderr), once connected."""
    path = _session.get("log")
    return Path(path) if path else None


def _open_log() -> Path:
    from rlmcli.config import rlm_home

    logs = rlm_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    old = sorted(logs.glob("ray-*.log"), key=lambda p: p.stat().st_mtime)
    for stale in old[:max(0, len(old) - KEEP_LOGS + 1)]:
        stale.unlink(missing_ok=True)
    path = logs / f"ray-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ray_logger = logging.getLogger("ray")
    _session["logger"] = (handler, ray_logger.handlers[:], ray_logger.propagate, ray_logger.level)
    ray_logger.handlers = [handler]
    ray_logger.propagate = False
    ray_logger.setLevel(logging.INFO)
    return path


def _divert_stderr() -> None:
    """Point fd 2 at the log file for the whole Ray session, and `sys.stderr` (which rlm and Rich
    write through) at a copy of the real stderr: Ray's C++ core writes its errors to fd 2 from its
    own threads, whatever its log settings say."""
    if "stderr" in _session:
        return
    sys.stderr.flush()
    real = os.dup(2)
    fd = os.open(_session["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    old = sys.stderr
    sys.stderr = open(real, "w", encoding=getattr(old, "encoding", None) or "utf-8",  # fd closed on restore
                      errors="backslashreplace", buffering=1, closefd=False)
    _session["stderr"] = (real, old)


def _restore_stderr() -> None:
    real, old = _session.pop("stderr")
    sys.stderr.flush()
    os.dup2(real, 2)
    os.close(real)
    sys.stderr = old


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


def connect(local_cpus: int | None = None) -> Any:
    """Connect (or start locally) once per process; returns the `ray` module."""
    loaded = sys.modules.get("ray")
    if loaded is not None and loaded.is_initialized():
        return loaded
    address = os.environ.get("RAY_ADDRESS", "").strip()
    target = head_address()
    if threading.current_thread() is threading.main_thread() and "sigterm" not in _session:
        # A cluster run stops on SIGTERM as on Ctrl-C: the batch's `finally` leaves the cluster tidy.
        _session["sigterm"] = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _connect(address, target, local_cpus)
    except BaseException:
        disconnect()
        raise


def _connect(address: str, target: tuple[str, int] | None, local_cpus: int | None) -> Any:
    _setenv("RAY_USAGE_STATS_ENABLED", os.environ.get("RAY_USAGE_STATS_ENABLED", "0"))  # no phoning home
    # Ray keeps the logger's handlers (ours: a file) when it configures logging; without, it clears them.
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": True, "logging_level": logging.INFO,
                              "runtime_env": {"env_vars": worker_env()}}
    if target and not address.startswith("ray://"):
        mode = _head_auth_mode(*target)
        _session["head"] = target
        chosen = os.environ.get("RAY_AUTH_MODE")
        if chosen in (None, "", "token", "disabled"):  # another mode (Kubernetes RBAC) is the user's to choose
            if chosen and chosen != mode:
                sys.stderr.write(f"rlm: the Ray head at {target[0]}:{target[1]} "
                                 f"{'requires' if mode == 'token' else 'does not use'} a token: connecting with "
                                 f"RAY_AUTH_MODE={mode}, not {chosen}\n")
            _setenv("RAY_AUTH_MODE", mode)
    elif target:  # Ray Client (ray://): a gRPC server of another kind, so only its answering is checked
        from rlmcli.gcs_probe import ProbeError, ask

        try:
            ask(target[0], target[1], None, PROBE_TIMEOUT)
        except ProbeError as exc:
            raise ClusterError(f"cannot reach the Ray head at {target[0]}:{target[1]} (RAY_ADDRESS): {exc}") from None
    elif not address or address.startswith("local"):
        # A new instance of our own ("local" even when a `ray start` head, or a stale record of one,
        # is here), in a temporary directory removed afterwards, with a token held in memory: Ray
        # would otherwise write ~/.ray/auth_token, which switches later clients and heads to tokens.
        temp = tempfile.mkdtemp(prefix="rlm-ray-")
        _session["temp"] = temp
        if os.environ.get("RAY_AUTH_MODE", "token") == "token":
            _setenv("RAY_AUTH_MODE", "token")
            if not os.environ.get("RAY_AUTH_TOKEN", "").strip():
                _setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        kwargs.update(address="local", num_cpus=local_cpus or os.cpu_count() or 1, include_dashboard=False,
                      _temp_dir=temp)
    ray = _ray()
    _session["log"] = str(_open_log())  # after importing Ray, which sets up its loggers
    if SHOW_LOG:
        sys.stderr.write(f"rlm: Ray's log for this run: {_session['log']}\n")
    _divert_stderr()
    with contextlib.suppress(Exception):  # an auth mode set after Ray was imported (library use)
        ray._raylet.Config.initialize("")
    local = kwargs.get("address") == "local"
    where = "a local Ray instance" if local else f"the Ray head at {address} (RAY_ADDRESS)"
    _init_within(ray, kwargs, LOCAL_START_TIMEOUT if local else INIT_TIMEOUT, where)
    return ray


def _init_within(ray: Any, kwargs: dict[str, Any], seconds: float, where: str) -> None:
    """ray.init with a deadline. Joining a cluster runs on a thread the main thread waits for, so
    the deadline, Ctrl-C and SIGTERM hold even while Ray blocks in native code (a thread that
    misses the deadline is abandoned). A local start stays on the calling thread: Ray's daemons
    die with the thread that started them (PR_SET_PDEATHSIG), and there is no remote to wait on."""
    log = _session["log"]
    if kwargs.get("address") == "local":
        try:
            with _alarm(seconds, f"could not start {where} within {seconds:.0f} s (Ray's log: {log})"):
                ray.init(**kwargs)
        except ClusterError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray's own errors, as one line
            raise ClusterError(f"could not start {where}: {describe(exc)} (Ray's log: {log})") from None
        return
    outcome: dict[str, BaseException] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=run, daemon=True, name="rlm-ray-init").start()
    in_time = finished.wait(seconds)
    if not in_time:
        _session["abandoned"] = True  # ray.shutdown() could block on it: leave it to the process exit
        raise ClusterError(f"could not connect to {where} within {seconds:.0f} s (Ray's log: {log})")
    error = outcome.get("error")
    if error is not None:
        raise ClusterError(f"could not connect to {where}: {describe(error)} (Ray's log: {log})") from None


@contextlib.contextmanager
def _alarm(seconds: float, message: str) -> Iterator[None]:
    """SIGALRM on the main thread; elsewhere no deadline."""
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


def head_lost(tries: int = 2) -> str | None:
    """Why the head joined stopped answering its GCS port (asked `tries` times), or None while it
    answers. Ray itself notices only after a minute, and then ends the process; rlm ends the batch
    in order first. Afterwards disconnect() leaves Ray alone: shutting down would wait on the head."""
    from rlmcli.gcs_probe import ProbeError, ask

    target = _session.get("head")
    if target is None:
        return None  # a local instance lives and dies with this process; Ray Client: not asked
    for attempt in range(tries):
        try:
            ask(target[0], target[1], None, PROBE_TIMEOUT / 2)
            return None
        except ProbeError as exc:
            reason = str(exc)
            if attempt + 1 < tries:
                time.sleep(1.0)
    _session["abandoned"] = True
    return f"the Ray head at {target[0]}:{target[1]} stopped answering ({reason})"


def lost() -> bool:
    """Whether the head stopped answering (head_lost): nothing more should be asked of Ray."""
    return bool(_session.get("abandoned"))


def get(ref: Any) -> Any:
    """ray.get of one result, waited for in steps, so signals reach the main thread and a head
    that stopped answering is a ClusterError, not a process Ray ends a minute later."""
    ray = sys.modules["ray"]
    checked = time.monotonic()
    while not ray.wait([ref], timeout=WAIT_STEP)[0]:
        if time.monotonic() - checked >= HEAD_CHECK_EVERY:
            reason = head_lost()
            if reason:
                raise ClusterError(f"the Ray cluster was lost: {reason}")
            checked = time.monotonic()
    return ray.get(ref)


def disconnect() -> None:
    """Leave the cluster; a local instance this process started stops with it and its directory
    goes; the environment, stderr, SIGTERM and logging are as before connect(). After a head was
    lost (or a connection abandoned) Ray is left alone, and its stderr stays in the log: the
    process is about to end, and Ray's threads still complain about the head."""
    ray = sys.modules.get("ray")
    abandoned = _session.pop("abandoned", False)
    if ray is not None and not abandoned:
        with contextlib.suppress(Exception):
            if ray.is_initialized():
                ray.shutdown()
    temp = _session.pop("temp", None)
    if temp and not abandoned:
        shutil.rmtree(temp, ignore_errors=True)
    if "stderr" in _session and not abandoned:
        _restore_stderr()
    for name, value in _session.pop("env", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if "sigterm" in _session:
        signal.signal(signal.SIGTERM, _session.pop("sigterm"))
    if "logger" in _session:
        handler, handlers, propagate, level = _session.pop("logger")
        handler.close()
        ray_logger = logging.getLogger("ray")
        ray_logger.handlers, ray_logger.propagate = handlers, propagate
        ray_logger.setLevel(level)
    _session.pop("head", None)


def describe(exc: BaseException) -> str:
    """Ray's error as one line: its cause kept, colour codes, the task header and tracebacks dropped."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:  # a task's own exception
        return f"{type(cause).__name__}: {describe(cause)}"
    kept = []
    for raw in _ANSI.sub("", str(exc)).splitlines():
        line = raw.strip()
        if raw.startswith("    ") or not line.strip("^~ ") or line.startswith(("ray::", "Traceback (most", 'File "')):
            continue  # the task's header line and a traceback's frames
        kept.append(line)
    one = " ".join(kept) or type(exc).__name__
    return one if len(one) <= 600 else one[:597] + "..."


class _Slots:
    """The batch's request limiter: bounds provider requests in flight across the cluster and adds
    up what running jobs have spent (for the batch budget). A Ray actor on the driver's node (see
    make_limiter), restarted by Ray if its process dies; a restart starts with every slot free."""

    def __init__(self, n: int, max_cost: float | None = None) -> None:
        import asyncio

        from rlmcli.engine.budget import SharedSpend

        self.free = asyncio.Semaphore(max(1, n))
        self.busy = 0
        self.peak = 0
        self.spend: dict[str, float] = {}  # running job -> US dollars so far
        # The batch's --max-cost ledger. A restart after its process died starts it empty: the
        # spend of requests already settled is then not counted again (the driver still stops new
        # jobs on finished plus running spend).
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
        if self.busy > 0:  # a slot taken before a restart is not released twice
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


def make_limiter(concurrency: int, max_cost: float | None = None) -> Any:
    """One limiter actor for the batch, pinned to the driver's own node: losing any other node
    cannot take it (and losing the driver's node ends the batch anyway). It also books each
    request's worst case against the batch's --max-cost, so jobs on many machines cannot
    overshoot it together."""
    ray = connect()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    slots = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_Slots)
    return slots.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote(concurrency, max_cost)


class ActorSpend:
    """The limiter actor's ledger, as a job's Budget expects of its `shared` (a SharedSpend)."""

    def __init__(self, actor: Any, max_cost: float | None) -> None:
        self.actor = actor
        self.max_cost = max_cost

    def book(self, prompt_cost: float, reply_price: float, cap: int, least: int) -> tuple[int, float]:
        import ray

        from rlmcli.engine.budget import BudgetExceeded
        from rlmcli.records import Limit

        granted = ray.get(self.actor.book.remote(prompt_cost, reply_price, cap, least))
        if granted is None:
            raise BudgetExceeded(Limit.MAX_COST, f"the batch's ${self.max_cost:g} is spent or booked by requests in "
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

        try:
            ray.get(self.actor.acquire.remote())
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"the batch's request limiter on the Ray cluster is gone: {describe(exc)}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(self.actor.release.remote())
