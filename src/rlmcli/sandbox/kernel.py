"""The sandbox child's main program: run cells until told to stop.

Exec'd by launcher.py (which applied the kernel layers) as `python -I -S kernel.py CONFIG_JSON`;
installs the audit hook and talks to the parent only over the two pipe descriptors named in the
config (stdout is /dev/null, stderr a pipe the parent reads with a cap; model output is captured).
It serves one run: whatever model code does to this interpreter dies with it.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import signal
import sys
import time
import traceback
from typing import Any

if __name__ == "__main__":  # run by path with -I: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from rlmcli.sandbox import protocol
from rlmcli.sandbox.helpers import HELPER_NAMES, FinalAnswer, Toolkit
from rlmcli.workspace.reader import WorkspaceReader

# Modules model code may use without paying for the import inside a cell.
PRELOAD = ("re", "json", "math", "itertools", "collections", "functools", "glob", "bisect")


class CappedIO:
    """A text sink that keeps the first `cap` bytes (UTF-8) and counts every byte written: a
    million emoji are 4 MB, and the cap says so."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.kept = 0
        self.total = 0

    def write(self, s: str) -> int:
        s = str(s)
        data = None if s.isascii() else s.encode("utf-8", "replace")
        size = len(s) if data is None else len(data)
        self.total += size
        if self.kept < self.cap:
            room = self.cap - self.kept
            if size <= room:
                piece = s
            else:  # cut at a character boundary
                piece = s[:room] if data is None else data[:room].decode("utf-8", "ignore")
                size = len(piece) if data is None else len(piece.encode("utf-8", "replace"))
            self.parts.append(piece)
            self.kept += size
        return len(s)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("captured output has no file descriptor")

    def getvalue(self) -> str:
        return "".join(self.parts)


class ParentChannel:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.next_id = 0

    def request(self, kind: str, payload: dict[str, Any]) -> Any:
        self.next_id += 1
        protocol.send(self.wfd, {"type": "request", "id": self.next_id, "kind": kind, "payload": payload})
        reply = protocol.recv(self.rfd)
        if reply.get("type") != "response" or reply.get("id") != self.next_id:
            raise RuntimeError("sandbox protocol error: unexpected reply from the parent")
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error") or f"{kind} failed")
        return reply.get("value")


# Bookkeeping a workspace holds beside its documents: never listed to model code.
HIDDEN = frozenset({"runs", ".lock", ".last_used", ".tmp", ".trash", ".journal.json",
                    "index.sqlite-wal", "index.sqlite-shm"})


def _hide_bookkeeping(root: str) -> None:
    """Where the kernel layers could not give model code a documents-only view of the workspace
    (`basic`, or no mount namespace), its root is listed without the bookkeeping entries."""
    real_listdir, real_scandir = os.listdir, os.scandir
    root = os.path.realpath(root)

    def at_root(path: Any) -> bool:
        try:
            return isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(path) == root
        except (TypeError, ValueError):
            return False

    def shown(name: Any) -> bool:
        return (os.fsdecode(name) if isinstance(name, bytes) else name) not in HIDDEN

    def listdir(path: Any = ".") -> list[Any]:
        names = real_listdir(path)
        return [n for n in names if shown(n)] if at_root(path) else names

    class _Entries:
        def __init__(self, it: Any) -> None:
            self.it = it

        def __iter__(self) -> Any:
            return (e for e in self.it if shown(e.name))

        def __next__(self) -> Any:
            while True:
                entry = next(self.it)
                if shown(entry.name):
                    return entry

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            self.it.close()

        def close(self) -> None:
            self.it.close()

    def scandir(path: Any = ".") -> Any:
        it = real_scandir(path)
        return _Entries(it) if at_root(path) else it

    os.listdir, os.scandir = listdir, scandir


def _watchdog(lifeline: int) -> None:
    """End with the parent even while a cell runs. The parent-death signal covers a crash; this
    covers the rest: a thread blocked reading a pipe whose only writer is the `rlm` process. The
    read holds that pipe however model code renumbers its descriptors, and signals cannot
    interrupt it (the thread blocks them all); EOF or any error ends the process."""
    import signal
    import threading

    def watch() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
        try:
            while os.read(lifeline, 1):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch, name="rlm-watchdog", daemon=True).start()


def _trim_traceback(exc: BaseException) -> str:
    """The traceback of the model's own code only (frames from <cell N>), then the error line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
    text = "".join(traceback.format_list(frames))
    head = "Traceback (most recent call last):\n" if frames else ""
    return head + text + "".join(traceback.format_exception_only(type(exc), exc))


_touches = [0]  # reads of the workspace by model code: did a cell look at the documents?
_in_cell = [False]  # SIGINT (the parent stopping a cell after Ctrl-C) counts only while a cell runs


def _on_interrupt(signum: int, frame: Any) -> None:
    if _in_cell[0]:
        raise KeyboardInterrupt


def _interrupted() -> dict[str, Any]:
    """The result of a cell stopped so late that run_cell could not report it itself."""
    text = "KeyboardInterrupt: the cell was stopped\n"
    return {"type": "result", "stdout": "", "stderr": text, "stdout_total": 0, "stderr_total": len(text),
            "changed": [], "duration": 0.0, "final": None, "error": True, "looked": False}


def _watch_reads(workspace: str) -> None:
    prefix = workspace.rstrip("/") + "/"

    def note(event: str, args: tuple[Any, ...]) -> None:
        if event in ("open", "os.listdir", "os.scandir", "glob.glob") and args:
            path = args[0]
            if isinstance(path, (str, bytes)):
                text = os.fsdecode(path)
                if not text.startswith("/") or text.startswith(prefix):
                    _touches[0] += 1

    sys.addaudithook(note)


def run_cell(code: str, number: int, ns: dict[str, Any], toolkit: Toolkit, cap: int, memory_mb: int) -> dict[str, Any]:
    out, err = CappedIO(cap), CappedIO(cap)
    touched = _touches[0] + toolkit.looks
    before = {k: id(v) for k, v in ns.items()}
    final: str | None = None
    error = False
    filename = f"<cell {number}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    started = time.perf_counter()
    try:
        _in_cell[0] = True
        tree = ast.parse(code, filename)
        if "context" not in ns and any(isinstance(n, ast.Name) and n.id == "context" for n in ast.walk(tree)):
            ns["context"] = toolkit.context_text()  # loaded on first use: it can be large
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        assert last is None or isinstance(last, ast.Expr)
        exec(compile(tree, filename, "exec"), ns)
        if last is not None:  # like a REPL: show the value of a final expression
            value = eval(compile(ast.Expression(last.value), filename, "eval"), ns)
            if value is not None:
                print(repr(value))
    except FinalAnswer as done:
        final = done.answer
    except SystemExit:
        err.write("SystemExit is ignored in the sandbox: call FINAL(answer) to finish.\n")
    except MemoryError:
        error = True
        err.write(f"MemoryError: the cell went over the sandbox's memory limit ({memory_mb} MiB); "
                  "work on smaller pieces.\n")
    except BaseException as exc:  # noqa: BLE001 - everything the model's code raises is reported
        error = True
        err.write(_trim_traceback(exc))
    finally:
        _in_cell[0] = False
        sys.stdout, sys.stderr = saved
    duration = time.perf_counter() - started
    changed = [k for k, v in ns.items() if not k.startswith("_") and k not in HELPER_NAMES
               and (k not in before or before[k] != id(v))]
    return {"type": "result", "stdout": out.getvalue(), "stderr": err.getvalue(), "stdout_total": out.total,
            "stderr_total": err.total, "changed": changed, "duration": duration, "final": final, "error": error,
            "looked": _touches[0] + toolkit.looks > touched}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    rfd, wfd = cfg["rfd"], cfg["wfd"]
    os.chdir(cfg["cwd"])
    _watchdog(cfg["lifeline"])
    for name in PRELOAD:
        __import__(name)
    _watch_reads(cfg["cwd"])
    if cfg["hide"]:
        _hide_bookkeeping(cfg["cwd"])
    layers = list(cfg["layers"])
    if "audit" not in cfg["disable"]:
        from rlmcli.sandbox import audit

        quota = None if cfg["quota_by_kernel"] else (cfg["scratch_bytes"], cfg["scratch_files"])
        hidden = [os.path.join(cfg["cwd"], name) for name in HIDDEN] if cfg["hide"] else []
        audit.install(cfg["read_roots"], [cfg["scratch"]], cfg["python_roots"], [cfg["cwd"]], quota, hidden,
                      # the standard library as the parent resolved it and as this interpreter found it
                      native_roots=cfg["native_roots"] + [os.path.dirname(os.__file__)],
                      max_threads=cfg["max_threads"])
        layers.append("audit")
    channel = ParentChannel(rfd, wfd)

    # One run per process: a new run gets a new process (Sandbox.reset), never this one again.
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__, "SCRATCH": cfg["scratch"]}
    toolkit = Toolkit(channel, ns, WorkspaceReader("."))
    ns.update(toolkit.bind())
    signal.signal(signal.SIGINT, _on_interrupt)  # Sandbox.interrupt: stops the running cell only
    protocol.send(wfd, {"type": "ready", "layers": layers})
    number = 0
    while True:
        try:
            message = protocol.recv(rfd)
        except (EOFError, OSError, protocol.ProtocolError):
            os._exit(0)  # the parent is gone (no thread model code left behind may keep us alive)
        if message.get("type") == "exec":
            number += 1
            try:
                result = run_cell(str(message.get("code", "")), number, ns, toolkit, cfg["output_cap"],
                                  cfg["memory_bytes"] >> 20)
            except KeyboardInterrupt:
                _in_cell[0] = False
                result = _interrupted()
            protocol.send(wfd, result)
        elif message.get("type") == "shutdown":
            os._exit(0)


if __name__ == "__main__":
    main()
