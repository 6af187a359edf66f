"""The parent side of the sandbox: start the child, run cells, serve its model requests.

The child holds no API key and cannot open a socket; `llm_query` and friends arrive here as
requests, and `on_request` (the engine) answers them. Time spent serving a request does not count
against the cell's wall-time limit.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlmcli.errors import RlmError
from rlmcli.sandbox import protocol
from rlmcli.sandbox.interface import CellResult, RequestHandler

KERNEL = Path(__file__).with_name("kernel.py")
LEVELS = ("auto", "strict", "basic")


class SandboxError(RlmError):
    """The sandbox could not start (for example, `strict` without kernel isolation)."""


@dataclass
class SandboxLimits:
    cell_timeout: float = 60.0  # wall seconds per cell, excluding time spent in model calls
    memory_mb: int = 2048  # address space
    cpu_seconds: int = 600  # CPU time for the child's whole life
    max_files: int = 256  # open descriptors
    file_mb: int = 256  # largest file the child may write (in scratch)
    max_output: int = 10_000  # characters of output shown to the model per cell
    output_cap: int = 1_000_000  # characters of each stream kept for the trace


# What model code may read in a workspace. The rest of it (runs/ with earlier questions and
# answers, locks, half-built documents) can be listed but not read.
WORKSPACE_READABLE = ("docs", "manifest.json", "index.sqlite")


def readable_parts(workspace: str) -> list[str]:
    return [os.path.join(workspace, name) for name in WORKSPACE_READABLE]


def _clean_env(scratch: str) -> dict[str, str]:
    """An environment built from nothing: no keys, tokens, proxies or anything secret-looking."""
    return {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


def python_roots() -> list[str]:
    """Directories the child must read to run Python: the installation and this package."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(KERNEL.parent.parent.parent)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(path)
    real = {os.path.realpath(r) for r in roots if r and os.path.isdir(r)}
    return sorted(real | {r for r in roots if r and os.path.isdir(r)})


# Shared libraries that stdlib extension modules link to (libz, libcrypto, libsqlite3, ...), and the
# loader's cache. Readable through Landlock only: Python code still cannot open them.
SYSTEM_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache")


class Sandbox:
    """A child Python process whose cwd is the workspace, running cells in one namespace."""

    def __init__(self, workspace: Path | str, level: str = "auto", limits: SandboxLimits | None = None,
                 on_request: RequestHandler | None = None,
                 disable: tuple[str, ...] = ()) -> None:
        """`disable` skips named layers ('audit', 'netns', 'landlock', 'seccomp'): only for tests
        that prove each remaining layer holds by itself."""
        if level not in LEVELS:
            raise SandboxError(f"unknown sandbox level {level!r} (choose {', '.join(LEVELS)})")
        self.workspace = os.path.realpath(workspace)
        self.level = level
        self.limits = limits or SandboxLimits()
        self.on_request = on_request
        self.disable = tuple(disable)
        self.scratch = tempfile.mkdtemp(prefix="rlm-scratch-")
        self.layers: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._rfd = self._wfd = -1

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        lim = self.limits
        cfg = {
            "rfd": to_child_r, "wfd": from_child_w, "workspace": self.workspace, "scratch": self.scratch,
            "level": self.level, "read_roots": readable_parts(self.workspace), "list_roots": [self.workspace],
            "python_roots": python_roots(),
            "system_roots": [p for p in SYSTEM_LIBRARIES if os.path.exists(p)],
            "memory_bytes": lim.memory_mb << 20, "cpu_seconds": lim.cpu_seconds, "max_files": lim.max_files,
            "file_bytes": lim.file_mb << 20, "output_cap": lim.output_cap, "disable": list(self.disable),
        }
        log = open(os.path.join(self.scratch, ".kernel.log"), "wb")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", str(KERNEL), json.dumps(cfg)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, pass_fds=(to_child_r, from_child_w),
                env=_clean_env(self.scratch), cwd=self.workspace, start_new_session=True)
        finally:
            log.close()
            os.close(to_child_r)
            os.close(from_child_w)
        self._rfd, self._wfd = from_child_r, to_child_w
        try:
            ready = self._recv(deadline=time.monotonic() + 30)
        except (EOFError, TimeoutError, protocol.ProtocolError) as exc:
            self._kill()
            raise SandboxError(f"the sandbox failed to start ({exc}); see {self.scratch}/.kernel.log") from None
        if ready.get("type") == "fatal":
            self._kill()
            raise SandboxError(f"sandbox: {ready.get('error')}")
        self.layers = list(ready.get("layers", []))
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
        shutil.rmtree(self.scratch, ignore_errors=True)

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
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        ready, _, _ = select.select([self._rfd], [], [], remaining)
        if not ready:
            raise TimeoutError
        return protocol.recv(self._rfd)

    def _answer(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"type": "response", "id": message.get("id")}
        kind = str(message.get("kind"))
        raw = message.get("payload")
        payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if self.on_request is None:
            reply.update(ok=False, error=f"{kind}: no model is connected to this sandbox")
        else:
            try:
                reply.update(ok=True, value=self.on_request(kind, payload))
            except Exception as exc:  # noqa: BLE001 - the model's code gets the error as text
                reply.update(ok=False, error=f"{kind} failed: {exc}")
        protocol.send(self._wfd, reply)

    def run(self, code: str, timeout: float | None = None) -> CellResult:
        """Run one cell. A timeout, crash or protocol breach restarts the child and says so."""
        if self.proc is None:
            self.start()
        limit = self.limits.cell_timeout if timeout is None else max(0.05, min(timeout, self.limits.cell_timeout))
        protocol.send(self._wfd, {"type": "exec", "code": code})
        deadline = time.monotonic() + limit
        try:
            while True:
                message = self._recv(deadline)
                if message.get("type") == "request":
                    paused = time.monotonic()
                    self._answer(message)
                    deadline += time.monotonic() - paused  # model calls do not count as cell time
                    continue
                if message.get("type") == "result":
                    return self._result(message)
                raise protocol.ProtocolError(f"unexpected message {message.get('type')!r}")
        except TimeoutError:
            self._restart()
            return CellResult(stderr=f"TimeoutError: the cell ran longer than {limit:g} s and was "
                              "stopped. The sandbox was restarted: all variables were lost.\n",
                              error=True, restarted=True, timed_out=True)
        except (EOFError, OSError, protocol.ProtocolError) as exc:
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
        def text(key: str) -> str:
            value = m.get(key)
            return value if isinstance(value, str) else ""

        def number(key: str) -> int:
            value = m.get(key)
            return value if isinstance(value, int) else 0

        raw = m.get("changed")
        changed: list[Any] = raw if isinstance(raw, list) else []
        final = m.get("final")
        return CellResult(stdout=text("stdout"), stderr=text("stderr"), stdout_total=number("stdout_total"),
                          stderr_total=number("stderr_total"), changed=[str(c) for c in changed][:200],
                          duration=float(m.get("duration") or 0.0), final=final if isinstance(final, str) else None,
                          error=bool(m.get("error")), looked=m.get("looked") is True)


def _death_reason(status: int) -> str:
    if status < 0:
        sig = -status
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = {"SIGXCPU": ": CPU time limit", "SIGKILL": ": killed (memory or time limit?)",
                "SIGSEGV": ": crashed"}.get(name, "")
        return f"killed by {name}{hint}"
    return f"exit status {status}"
