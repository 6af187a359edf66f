"""The parent side of the sandbox: start the child, run cells, serve its model requests.

The child holds no API key and cannot open a socket; `llm_query` and friends arrive here as
requests, and `on_request` (the engine) answers them. Time spent serving a request does not count
against the cell's own time limit, but does count against `wall` (the run's --timeout).

Every frame from the child is untrusted input (model code can write to its pipe): it is read
with a deadline, size-capped and checked field by field; a breach kills and restarts the child,
and the cell reports it. The child dies with this process (parent-death signal plus a watchdog),
and the directories of sandboxes whose parent died are swept at the next start.
"""

from __future__ import annotations

import glob
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlmcli.errors import RlmError
from rlmcli.sandbox import protocol
from rlmcli.sandbox.interface import CellResult, RequestHandler

HERE = Path(__file__).parent
KERNEL = HERE / "kernel.py"
LAUNCHER = HERE / "launcher.py"
LEVELS = ("auto", "strict", "basic")
REQUEST_KINDS = ("llm_query", "llm_batch", "rlm_query", "look")
# Extension modules model code never gets: raw memory access (ctypes, cffi) and CPython's tests.
NATIVE_REFUSED = ("_ctypes", "_cffi_backend", "_testcapi", "_testinternalcapi", "_testmultiphase", "_testbuffer",
                  "_testclinic", "_testimportmultiple", "_testsinglephase", "_xxsubinterpreters",
                  "_xxinterpchannels", "_xxtestfuzz", "xxlimited", "xxsubtype")


class SandboxError(RlmError):
    """The sandbox could not start (for example, `strict` without kernel isolation)."""


@dataclass
class SandboxLimits:
    cell_timeout: float = 60.0  # wall seconds per cell, excluding time spent in model calls
    memory_mb: int = 2048  # address space
    cpu_seconds: int = 600  # CPU time for the child's whole life
    max_files: int = 256  # open descriptors
    file_mb: int = 256  # largest file the child may write (in scratch)
    scratch_mb: int = 1024  # all of scratch
    scratch_files: int = 10_000  # files in scratch
    max_output: int = 10_000  # characters of output shown to the model per cell
    output_cap: int = 1_000_000  # characters of each stream kept for the trace


def _clean_env(scratch: str) -> dict[str, str]:
    """An environment built from nothing: no keys, tokens, proxies or anything secret-looking."""
    return {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


def _stdlib_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return sorted({os.path.realpath(p) for p in (paths.get("stdlib"), paths.get("platstdlib")) if p and os.path.isdir(p)})


def python_roots() -> list[str]:
    """What model code may import from: the standard library and this package (not site-packages)."""
    with _rules_lock:
        return _stdlib_dirs() + [os.path.realpath(HERE.parent)]


_rules_lock = threading.Lock()
_rules: list[tuple[str, str]] | None = None


def python_rules() -> list[tuple[str, str]]:
    """Landlock rules for running the kernel (computed once: sysconfig's first use is not
    thread-safe, and a rule lost to that race would make the exec fail)."""
    global _rules
    with _rules_lock:
        if _rules is None:
            _rules = _python_rules()
        return list(_rules)


def _python_rules() -> list[tuple[str, str]]:
    """The interpreter, every stdlib module except the refused extensions, this package, and the
    shared libraries they link to. Names of rights (READ, LIST, EXEC) as guard.py defines them."""
    rules: list[tuple[str, str]] = []
    for stdlib in _stdlib_dirs():
        rules.append((stdlib, "LIST"))
        for entry in os.scandir(stdlib):
            if entry.name in ("lib-dynload", "site-packages", "dist-packages"):
                continue
            rules.append((entry.path, "READ"))
        dynload = os.path.join(stdlib, "lib-dynload")
        if os.path.isdir(dynload):
            rules.append((dynload, "LIST"))
            for entry in os.scandir(dynload):
                if not entry.name.split(".")[0].startswith(NATIVE_REFUSED):
                    rules.append((entry.path, "READ"))
    package = os.path.realpath(HERE.parent)
    rules += [(package, "READ"), (os.path.dirname(package), "LIST"), (os.path.realpath(sys.executable), "EXEC")]
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and library and os.path.exists(os.path.join(libdir, library)):
        rules.append((os.path.realpath(os.path.join(libdir, library)), "READ"))  # a shared libpython
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for path in ("/lib64", "/usr/lib64", f"/lib/{multiarch}", f"/usr/lib/{multiarch}", "/etc/ld.so.cache"):
        if multiarch or not path.endswith("/"):
            rules.append((path, "READ"))
    for lib in glob.glob("/usr/local/lib/*.so*"):
        rules.append((lib, "READ"))
    return rules


def sweep_stale(base: str | None = None) -> int:
    """Remove the directories of sandboxes whose parent process is gone; returns how many."""
    removed = 0
    for path in glob.glob(os.path.join(base or tempfile.gettempdir(), "rlm-sandbox-*-*")):
        try:
            pid = int(os.path.basename(path).split("-")[2])
            os.kill(pid, 0)
            continue  # alive (or not ours to signal, which also means alive)
        except ProcessLookupError:
            pass
        except (ValueError, IndexError, PermissionError):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


class _Spawner:
    """Starts sandbox processes from one long-lived thread: the parent-death signal fires when
    the *thread* that forked a child exits, and request threads come and go."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[Any, queue.Queue[Any]]] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def _serve(self) -> None:
        while True:
            make, reply = self.jobs.get()
            try:
                reply.put((True, make()))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                reply.put((False, exc))

    def run(self, make: Any) -> Any:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._serve, name="rlm-sandbox-spawner", daemon=True)
                self.thread.start()
        reply: queue.Queue[Any] = queue.Queue()
        self.jobs.put((make, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value


_spawner = _Spawner()


class Sandbox:
    """A child Python process whose cwd is (a view of) the workspace, running cells in one namespace."""

    def __init__(self, workspace: Path | str, level: str = "auto", limits: SandboxLimits | None = None,
                 on_request: RequestHandler | None = None, disable: tuple[str, ...] = ()) -> None:
        """`disable` skips named layers ('audit', 'netns', 'mountns', 'landlock', 'seccomp'): only
        for tests that prove each remaining layer holds by itself."""
        if level not in LEVELS:
            raise SandboxError(f"unknown sandbox level {level!r} (choose {', '.join(LEVELS)})")
        self.workspace = os.path.realpath(workspace)
        self.level = level
        self.limits = limits or SandboxLimits()
        self.on_request = on_request
        self.disable = tuple(disable)
        sweep_stale()
        self.base = tempfile.mkdtemp(prefix=f"rlm-sandbox-{os.getpid()}-")
        self.scratch = os.path.join(self.base, "scratch")  # a tmpfs inside the child where it can
        self.world = os.path.join(self.base, "world")  # the documents-only view of the workspace
        os.mkdir(self.scratch, 0o700)
        os.mkdir(self.world, 0o700)
        self.layers: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._rfd = self._wfd = -1
        self.busy = False  # a cell was sent and its result not read (a Ctrl-C left it running)

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        lim = self.limits
        cfg = {
            "rfd": to_child_r, "wfd": from_child_w, "workspace": self.workspace, "world": self.world,
            "scratch": self.scratch, "level": self.level, "parent_pid": os.getpid(),
            "python": os.path.realpath(sys.executable), "kernel": str(KERNEL), "python_rules": python_rules(),
            "python_roots": python_roots(), "env": _clean_env(self.scratch),
            "memory_bytes": lim.memory_mb << 20, "cpu_seconds": lim.cpu_seconds, "max_files": lim.max_files,
            "file_bytes": lim.file_mb << 20, "scratch_bytes": lim.scratch_mb << 20, "scratch_files": lim.scratch_files,
            "output_cap": lim.output_cap, "disable": list(self.disable),
        }
        log = open(os.path.join(self.base, "kernel.log"), "wb")

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(cfg)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, pass_fds=(to_child_r, from_child_w),
                env=_clean_env(self.scratch), cwd=self.base, start_new_session=True)

        try:
            self.proc = _spawner.run(spawn)
        finally:
            log.close()
            os.close(to_child_r)
            os.close(from_child_w)
        self._rfd, self._wfd = from_child_r, to_child_w
        try:
            ready = self._recv(deadline=time.monotonic() + 30)
            if ready.get("type") == "ready":
                protocol.check(ready, {"layers": (list,)})
        except (EOFError, TimeoutError, protocol.ProtocolError) as exc:
            self._kill()
            raise SandboxError(f"the sandbox failed to start ({exc}); see {self.base}/kernel.log") from None
        if ready.get("type") == "fatal":
            self._kill()
            raise SandboxError(f"sandbox: {ready.get('error')}")
        self.layers = [str(layer) for layer in ready.get("layers", [])]
        if self.level == "auto":
            note_missing_layers(self.layers, self.disable)
        return self

    def reset(self) -> None:
        """Forget every variable (a new run in the same warm process); restarts a dead child."""
        if self.proc is None or self.proc.poll() is not None:
            self._restart()
            return
        try:
            protocol.send(self._wfd, {"type": "reset"})
            reply = self._recv(deadline=time.monotonic() + 10)
            if reply.get("type") != "ready":
                raise protocol.ProtocolError("no ready after reset")
        except (EOFError, OSError, TimeoutError, protocol.ProtocolError):
            self._restart()

    def _kill(self) -> None:
        self.busy = False
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None
        for fd in (self._rfd, self._wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._rfd = self._wfd = -1

    def close(self) -> None:
        self._kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _restart(self) -> None:
        self._kill()
        self.start()

    @property
    def max_output(self) -> int:
        return self.limits.max_output

    # ---- cells -----------------------------------------------------------------------------------
    def _recv(self, deadline: float) -> dict[str, Any]:
        return protocol.recv(self._rfd, deadline=deadline)

    def _answer(self, message: dict[str, Any]) -> None:
        protocol.check(message, {"id": (int,), "kind": (str,), "payload": (dict,)})
        kind, payload = message["kind"], message["payload"]
        if kind not in REQUEST_KINDS:
            raise protocol.ProtocolError(f"unknown request {kind[:40]!r}")
        reply: dict[str, Any] = {"type": "response", "id": message["id"]}
        if self.on_request is None:
            reply.update(ok=False, error=f"{kind}: no model is connected to this sandbox")
        else:
            try:
                reply.update(ok=True, value=self.on_request(kind, payload))
            except Exception as exc:  # noqa: BLE001 - the model's code gets the error as text
                reply.update(ok=False, error=f"{kind} failed: {exc}")
        protocol.send(self._wfd, reply)

    def run(self, code: str, timeout: float | None = None, wall: float | None = None) -> CellResult:
        """Run one cell. `timeout` may shorten the cell limit (time serving model requests does
        not count); `wall` is a monotonic deadline that everything counts against (the run's
        --timeout). A timeout, crash or protocol breach restarts the child and says so."""
        if self.proc is None:
            self.start()
        limit = self.limits.cell_timeout if timeout is None else max(0.05, min(timeout, self.limits.cell_timeout))
        protocol.send(self._wfd, {"type": "exec", "code": code})
        self.busy = True
        result = self._exchange(limit, wall)
        self.busy = False
        return result

    def interrupt(self, grace: float = 3.0) -> bool:
        """Stop the cell a Ctrl-C left running (SIGINT to the child, which raises KeyboardInterrupt
        in the cell only) and read up to its result, refusing the model requests it still makes.
        True when the child stopped in time and its variables survived; otherwise it is restarted."""
        if not self.busy:
            return True
        self.busy = False
        if self.proc is None or self.proc.poll() is not None:
            self._restart()
            return False
        try:
            os.kill(self.proc.pid, signal.SIGINT)
            deadline = time.monotonic() + grace
            while True:
                message = self._recv(deadline)
                if message.get("type") == "result":
                    return True
                if message.get("type") != "request":
                    raise protocol.ProtocolError(f"unexpected frame {str(message.get('type'))[:40]!r}")
                protocol.check(message, {"id": (int,)})
                protocol.send(self._wfd, {"type": "response", "id": message["id"], "ok": False, "error": "interrupted"})
        except (EOFError, OSError, TimeoutError, protocol.ProtocolError):
            self._restart()
            return False

    def _exchange(self, limit: float, wall: float | None) -> CellResult:
        """Frames of the running cell until its result: requests served, limits enforced."""
        deadline = time.monotonic() + limit
        try:
            while True:
                message = self._recv(deadline if wall is None else min(deadline, wall))
                kind = message.get("type")
                if kind == "request":
                    paused = time.monotonic()
                    self._answer(message)
                    deadline += time.monotonic() - paused  # model calls do not count as cell time
                    continue
                if kind == "result":
                    return self._result(message)
                raise protocol.ProtocolError(f"unexpected frame {str(kind)[:40]!r}")
        except TimeoutError:
            self._restart()
            cut = wall is not None and time.monotonic() >= wall
            why = "the run's time budget (--timeout) ran out" if cut else f"the cell ran longer than {limit:g} s"
            return CellResult(stderr=f"TimeoutError: {why} and it was stopped. The sandbox was restarted: all "
                              "variables were lost.\n", error=True, restarted=True, timed_out=True)
        except protocol.ProtocolError as exc:
            self._restart()
            return CellResult(stderr=f"SandboxError: sandbox protocol breach ({exc}). The sandbox was restarted: "
                              "all variables were lost.\n", error=True, restarted=True)
        except (EOFError, OSError) as exc:
            status = self._exit_status()
            why = _death_reason(status) if status is not None else str(exc)
            self._restart()
            return CellResult(stderr=f"SandboxError: the sandbox process died ({why}). It was restarted: all "
                              "variables were lost.\n", error=True, restarted=True)

    def _exit_status(self) -> int | None:
        # The pipe closes a moment before the kernel reaps the child: wait briefly for the status
        # so the model learns why (SIGXCPU, SIGKILL) instead of "channel closed".
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None

    @staticmethod
    def _result(m: dict[str, Any]) -> CellResult:
        protocol.check(m, {"stdout": (str,), "stderr": (str,), "stdout_total": (int,), "stderr_total": (int,),
                           "changed": (list,), "duration": (int, float), "final": (str, type(None)),
                           "error": (bool,), "looked": (bool,)})
        if m["stdout_total"] < 0 or m["stderr_total"] < 0 or not 0 <= m["duration"] < 1e9 \
                or len(m["changed"]) > 10_000 or not all(isinstance(c, str) for c in m["changed"]):
            raise protocol.ProtocolError("malformed 'result' frame: a field is out of range")
        return CellResult(stdout=m["stdout"], stderr=m["stderr"], stdout_total=m["stdout_total"],
                          stderr_total=m["stderr_total"], changed=[c[:200] for c in m["changed"][:200]],
                          duration=float(m["duration"]), final=m["final"], error=m["error"], looked=m["looked"])


KERNEL_LAYERS = ("netns", "mountns", "landlock", "seccomp")
_noted = threading.Event()


def note_missing_layers(layers: list[str], disable: tuple[str, ...] = ()) -> None:
    """`auto` runs with what the kernel allows; once per process, say on stderr what it lacks."""
    missing = [k for k in KERNEL_LAYERS if k not in disable and not any(x.startswith(k) for x in layers)]
    if not missing or _noted.is_set():
        return
    _noted.set()
    kernel_fs = any(x.startswith(("landlock", "mountns")) for x in layers)
    kernel_net = any(x.startswith(("netns", "seccomp")) for x in layers)
    if not (kernel_fs or kernel_net):
        what = ("only the audit hook and rlimits remain: they stop accidents, not code written to get around "
                "them (README, Isolation); --sandbox strict refuses to run this way")
    else:
        what = f"running with {', '.join(layers)} (README, Isolation)"
    sys.stderr.write(f"rlm: sandbox: this system does not allow {', '.join(missing)}; {what}\n")
    sys.stderr.flush()


def _death_reason(status: int) -> str:
    if status < 0:
        sig = -status
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = {"SIGXCPU": ": CPU time limit", "SIGKILL": ": killed (memory or time limit?)",
                "SIGSEGV": ": crashed"}.get(name, "")
        return f"killed by {name}{hint}"
    return f"exit status {status}"
