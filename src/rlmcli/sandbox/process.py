"""The parent side of the sandbox: start the child, run cells, serve its model requests.

The child holds no API key and cannot open a socket; `llm_query` and friends arrive here as
requests, and `on_request` (the engine) answers them. Time spent serving a request does not count
against the cell's own time limit, but does count against `wall` (the run's --timeout).

Every frame from the child is untrusted input (model code can write to its pipe): it is read
with a deadline, size-capped and checked field by field, and replies are written with a deadline;
a breach kills and restarts the child, and the cell reports it. The child dies with this process
(parent-death signal, plus a watchdog on a lifeline pipe only this process writes to), and the
directories of sandboxes whose parent died are swept at the next start. Its stderr is a pipe read
here with a cap, never a file. A child serves one run: `reset` starts a fresh one.
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
from rlmcli.sandbox import cgroup, protocol
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
    output_cap: int = 1_000_000  # bytes (UTF-8) of each stream kept for the trace
    max_threads: int = 64  # threads of the child, its main thread included


STDERR_KEEP = 64 * 1024  # bytes of the child's own stderr kept (for a failed start's message)


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # not ours to signal, which also means alive
    return True


def sweep_stale(base: str | None = None) -> int:
    """Remove the directories (and pids cgroups) of sandboxes whose parent process is gone;
    returns how many directories."""
    cgroup.sweep(_alive)
    removed = 0
    for path in glob.glob(os.path.join(base or tempfile.gettempdir(), "rlm-sandbox-*-*")):
        try:
            pid = int(os.path.basename(path).split("-")[2])
        except (ValueError, IndexError):
            continue
        if _alive(pid):
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


class _Stderr:
    """Drains the child's stderr pipe on a thread, keeping the first STDERR_KEEP bytes; past that
    it closes the pipe (the child's writes then fail with EPIPE): nothing the child writes there
    reaches a file or grows this process."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.kept = bytearray()
        threading.Thread(target=self._drain, name="rlm-sandbox-stderr", daemon=True).start()

    def _drain(self) -> None:
        try:
            while len(self.kept) < STDERR_KEEP:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                self.kept += chunk[:STDERR_KEEP - len(self.kept)]
        except OSError:
            pass
        finally:
            os.close(self.fd)

    def tail(self, lines: int = 3) -> str:
        text = bytes(self.kept).decode("utf-8", "replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])[:500]


class Sandbox:
    """A child Python process whose cwd is (a view of) the workspace, running cells in one namespace."""

    def __init__(self, workspace: Path | str, level: str = "auto", limits: SandboxLimits | None = None,
                 on_request: RequestHandler | None = None, disable: tuple[str, ...] = ()) -> None:
        """`disable` skips named layers ('audit', 'netns', 'mountns', 'ipcns', 'pidns', 'landlock',
        'seccomp', 'pids-cgroup'): only for tests that prove each remaining layer holds by itself."""
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
        # the kernel's count of threads where it can keep one: + the launcher and the main thread
        self.cgroup = None if "pids-cgroup" in self.disable else \
            cgroup.create(os.path.basename(self.base), self.limits.max_threads + 2)
        self.layers: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._rfd = self._wfd = self._lifeline = -1
        self._stderr: _Stderr | None = None
        self._booting = False  # launched; its ready frame not read yet
        self._used = False  # a cell ran in this process: the next run needs a fresh one
        self.busy = False  # a cell was sent and its result not read (a Ctrl-C left it running)

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        self._launch()
        self._await_ready()
        return self

    def _launch(self) -> None:
        """Start the child; it confines itself and boots while the caller goes on (`_await_ready`
        reads its ready frame)."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        life_r, life_w = os.pipe()  # never written: its end of file tells the child we are gone
        err_r, err_w = os.pipe()
        lim = self.limits
        shutil.rmtree(self.scratch, ignore_errors=True)  # where no tmpfs replaces it: an empty one
        os.mkdir(self.scratch, 0o700)
        cfg = {
            "rfd": to_child_r, "wfd": from_child_w, "lifeline": life_r, "workspace": self.workspace,
            "world": self.world, "scratch": self.scratch, "level": self.level, "parent_pid": os.getpid(),
            "host_uid": os.getuid(), "cgroup": self.cgroup, "python": os.path.realpath(sys.executable),
            "kernel": str(KERNEL), "python_rules": python_rules(), "python_roots": python_roots(),
            "native_roots": _stdlib_dirs(), "env": _clean_env(self.scratch),
            "memory_bytes": lim.memory_mb << 20, "cpu_seconds": lim.cpu_seconds, "max_files": lim.max_files,
            "file_bytes": lim.file_mb << 20, "scratch_bytes": lim.scratch_mb << 20, "scratch_files": lim.scratch_files,
            "output_cap": lim.output_cap, "max_threads": lim.max_threads, "disable": list(self.disable),
        }

        def spawn() -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(cfg)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err_w, pass_fds=(to_child_r, from_child_w, life_r),
                env=_clean_env(self.scratch), cwd=self.base, start_new_session=True)
            if self.cgroup is not None:  # while the launcher's interpreter starts; it waits for word
                moved: dict[str, Any] = {"type": "cgroup", "joined": True}
                try:
                    cgroup.add(self.cgroup, proc.pid)
                except OSError as exc:
                    moved = {"type": "cgroup", "joined": False, "error": str(exc)[:200]}
                try:
                    protocol.send(to_child_w, moved)
                except OSError:
                    pass  # the launcher is gone already: waiting for its ready frame says why
            return proc

        try:
            self.proc = _spawner.run(spawn)
        except BaseException:
            for fd in (to_child_w, from_child_r, life_w, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (to_child_r, from_child_w, life_r, err_w):
                os.close(fd)
        os.set_blocking(to_child_w, False)  # replies are written with a deadline
        self._rfd, self._wfd, self._lifeline = from_child_r, to_child_w, life_w
        self._stderr = _Stderr(err_r)
        self._booting, self._used = True, False

    def _await_ready(self) -> None:
        if not self._booting:
            return
        self._booting = False
        try:
            ready = self._recv(deadline=time.monotonic() + 30)
            if ready.get("type") == "ready":
                protocol.check(ready, {"layers": (list,)})
        except (EOFError, OSError, TimeoutError, protocol.ProtocolError) as exc:
            status = self._exit_status()
            why = _death_reason(status) if status is not None else str(exc) or type(exc).__name__
            said = self._stderr.tail() if self._stderr is not None else ""
            self._kill()
            raise SandboxError(f"the sandbox failed to start ({why}{': ' + said if said else ''})") from None
        if ready.get("type") == "fatal":
            self._kill()
            raise SandboxError(f"sandbox: {str(ready.get('error'))[:2000]}")
        layers = [str(layer) for layer in ready.get("layers", [])]
        lost = [layer for layer in self.layers if layer not in layers]
        if lost:  # a fresh process never runs with less isolation than the last one had
            self._kill()
            raise SandboxError(f"the restarted sandbox lacks layers the first one had: {', '.join(lost)}")
        self.layers = layers
        if self.level == "auto":
            note_missing_layers(self.layers, self.disable)

    def reset(self) -> None:
        """A fresh process for a new run: nothing earlier code did to the interpreter (its
        modules, the kernel's own functions, threads, scratch) survives. A no-op while the
        current process has run no cell. The new one boots while the caller goes on."""
        if self.proc is not None and not self._used and self.proc.poll() is None:
            return
        self._kill()
        self._launch()

    def _kill(self) -> None:
        self.busy = False
        if self.proc is not None:
            # With a PID namespace the kernel is the launcher's child: kill it first, so the
            # launcher reaps it (and ends) rather than leaving a zombie to whoever adopts it.
            children = _children_of(self.proc.pid)
            for child in children:
                try:
                    os.kill(child, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if children:
                try:
                    self.proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None
        for fd in (self._rfd, self._wfd, self._lifeline):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._rfd = self._wfd = self._lifeline = -1
        self._booting = False

    def close(self) -> None:
        self._kill()
        shutil.rmtree(self.base, ignore_errors=True)
        if self.cgroup is not None:
            cgroup.remove(self.cgroup)

    def __enter__(self) -> Sandbox:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _restart(self) -> None:
        """After a timeout, breach or death: a fresh process, booting while the run goes on."""
        self._kill()
        self._launch()

    @property
    def max_output(self) -> int:
        return self.limits.max_output

    # ---- cells -----------------------------------------------------------------------------------
    def _recv(self, deadline: float) -> dict[str, Any]:
        return protocol.recv(self._rfd, deadline=deadline)

    def _send(self, message: dict[str, Any]) -> None:
        protocol.send(self._wfd, message, deadline=time.monotonic() + protocol.FRAME_SECONDS)

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
                reply.update(ok=False, error=_bounded(f"{kind} failed: {exc}"))
        self._send(reply)

    def run(self, code: str, timeout: float | None = None, wall: float | None = None) -> CellResult:
        """Run one cell. `timeout` may shorten the cell limit (time serving model requests does
        not count); `wall` is a monotonic deadline that everything counts against (the run's
        --timeout). A timeout, crash or protocol breach restarts the child and says so."""
        if self.proc is None:
            self._launch()
        self._await_ready()
        limit = self.limits.cell_timeout if timeout is None else max(0.05, min(timeout, self.limits.cell_timeout))
        self.busy = True  # stays set when Ctrl-C cuts the exchange: interrupt() then reads the result
        result = self._exchange(code, limit, wall)
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
                self._send({"type": "response", "id": message["id"], "ok": False, "error": "interrupted"})
        except (EOFError, OSError, TimeoutError, protocol.ProtocolError):
            self._restart()
            return False

    def _exchange(self, code: str, limit: float, wall: float | None) -> CellResult:
        """Frames of the running cell until its result: requests served, limits enforced."""
        deadline = time.monotonic() + limit
        self._used = True
        try:
            self._send({"type": "exec", "code": code})
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

    def _result(self, m: dict[str, Any]) -> CellResult:
        protocol.check(m, {"stdout": (str,), "stderr": (str,), "stdout_total": (int,), "stderr_total": (int,),
                           "changed": (list,), "duration": (int, float), "final": (str, type(None)),
                           "error": (bool,), "looked": (bool,)})
        if m["stdout_total"] < 0 or m["stderr_total"] < 0 or not 0 <= m["duration"] < 1e9 \
                or len(m["changed"]) > 10_000 or not all(isinstance(c, str) for c in m["changed"]):
            raise protocol.ProtocolError("malformed 'result' frame: a field is out of range")
        cap = self.limits.output_cap  # a forged frame may carry more than the kernel keeps
        stdout, stderr = _cut_bytes(m["stdout"], cap), _cut_bytes(m["stderr"], cap)
        return CellResult(stdout=stdout, stderr=stderr, stdout_total=max(m["stdout_total"], _size(stdout)),
                          stderr_total=max(m["stderr_total"], _size(stderr)),
                          changed=[c[:200] for c in m["changed"][:200]], duration=float(m["duration"]),
                          final=m["final"], error=m["error"], looked=m["looked"])


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _cut_bytes(text: str, cap: int) -> str:
    if len(text) <= cap // 4 or _size(text) <= cap:
        return text
    return text.encode("utf-8")[:cap].decode("utf-8", "ignore")


def _bounded(text: str, limit: int = 2000) -> str:
    """An error for model code: never an unbounded echo of what it sent."""
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit:,} more characters]"


def _children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except (OSError, ValueError):
        return []


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
