"""The audit-hook layer: a Python audit hook that refuses, with readable errors, what the kernel
layers also stop (and, at `basic`, stands alone as a seat belt).

Each kind of action has a named check; `AuditPolicy.hook` looks the event up once and caches
which check (if any) applies, so the hook costs a dict lookup for events nobody polices.
"""

from __future__ import annotations

import _thread
import os
import stat
import sys
from collections.abc import Callable
from typing import Any

PROCESS_EVENTS = frozenset({
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.vfork",
    "subprocess.Popen", "os.startfile", "pty.spawn", "os.setns", "os.unshare", "os.killpg",
    "os.pidfd_open",
})
FORBIDDEN_IMPORTS = frozenset({
    "ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess", "subprocess", "pty",
    "multiprocessing", "_multiprocessing", "socket", "_socket", "ssl", "_ssl", "_posixshmem",
    "_testcapi", "_testinternalcapi", "_xxsubinterpreters",
})
NETWORK_PREFIXES = ("socket.", "http.client.", "urllib.", "ftplib.", "smtplib.", "poplib.", "imaplib.",
                    "nntplib.", "telnetlib.", "webbrowser.")
WRITE_EVENTS = {  # event: the argument positions that are paths written to
    "os.mkdir": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.symlink": (0, 1),
    "os.link": (0, 1), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,), "os.truncate": (0,),
    "os.chflags": (0,), "os.lchflags": (0,), "os.setxattr": (0,), "os.removexattr": (0,),
    "os.mkfifo": (0,), "os.mknod": (0,), "shutil.rmtree": (0,), "shutil.move": (0, 1),
    "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.make_archive": (0,),
}
LIST_EVENTS = {"os.listdir": 0, "os.scandir": 0, "glob.glob": 0, "os.chdir": 0, "os.listxattr": 0,
               "os.getxattr": 0}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
EXTRA_READS = frozenset({"/dev/null", "/dev/urandom", "/dev/zero"})

Check = Callable[[tuple[Any, ...]], None]


def _dirs(roots: list[str]) -> tuple[str, ...]:
    return tuple(r.rstrip("/") + "/" for r in roots)


class AuditPolicy:
    """What model code may touch: reads under `read_roots` (plus scratch and the Python
    installation), listings also under `list_roots`, writes only under `write_roots`."""

    def __init__(self, read_roots: list[str], write_roots: list[str], python_roots: list[str],
                 list_roots: list[str] | None = None, quota: tuple[int, int] | None = None,
                 hidden: list[str] | None = None) -> None:
        list_roots = list_roots or []
        self.hidden = _dirs(hidden or [])  # bookkeeping under a listable root: not even listed
        # Where no tmpfs enforces the scratch quota, it is accounted here: files created are
        # counted, and the bytes in scratch are summed every QUOTA_EVERY writes (approximate).
        self.quota = quota
        self.created = 0
        self.writes_seen = 0
        self.reads = _dirs(read_roots + write_roots + python_roots)
        self.listable = self.reads + _dirs(list_roots)
        self.writes = _dirs(write_roots)
        self.pyroots = _dirs(python_roots)
        # Directories under read-only roots cannot change while the model runs (it writes only to
        # scratch), so their resolved form is cached: realpath() costs an lstat per component.
        self.stable = _dirs(read_roots + python_roots + list_roots)
        self.real_dirs: dict[str, str] = {}
        self.pid = os.getpid()
        self.busy: set[int] = set()  # threads inside a check: its own file calls must not re-enter
        self.cache: dict[str, Check | None] = {}
        self.rules = {
            "reading": (self.reads, EXTRA_READS, "only the workspace and scratch"),
            "listing": (self.listable, frozenset(), "only the workspace and scratch"),
            "writing": (self.writes, frozenset(), "only the scratch directory"),
        }

    # ---- paths ----------------------------------------------------------------------------------
    @staticmethod
    def inside(path: str, roots: tuple[str, ...]) -> bool:
        return (path + "/").startswith(roots)

    def resolve(self, path: Any) -> str | None:
        if isinstance(path, int) or path is None:
            return None  # an already-open descriptor: its opening was checked
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = path.decode("utf-8", "surrogateescape")
        full = os.path.join(os.getcwd(), path)
        head, _, tail = full.rpartition("/")
        if not head or tail in ("", ".", ".."):
            return os.path.realpath(full)
        real_head = self.real_dirs.get(head)
        if real_head is None:
            real_head = os.path.realpath(head)
            if self.inside(real_head, self.stable) and not self.inside(real_head, self.writes):
                self.real_dirs[head] = real_head
        try:
            if stat.S_ISLNK(os.lstat(full).st_mode):  # the last component is checked on every call
                return os.path.realpath(full)
        except OSError:
            pass  # not there (yet): nothing to follow
        return real_head.rstrip("/") + "/" + tail

    def refuse(self, kind: str, *paths: Any, hidden_ok: bool = False) -> None:
        """PermissionError unless every path lies inside the roots for this kind of access (and,
        unless `hidden_ok`, outside the hidden bookkeeping)."""
        roots, also, where = self.rules[kind]
        me = _thread.get_ident()
        self.busy.add(me)
        try:
            for path in paths:
                real = self.resolve(path)
                if real is not None and self.hidden and not hidden_ok and self.inside(real, self.hidden):
                    raise PermissionError(f"{kind} {path!s} is not allowed in the rlm sandbox ({where})")
                if real is not None and real not in also and not self.inside(real, roots):
                    raise PermissionError(f"{kind} {path!s} is not allowed in the rlm sandbox ({where})")
        finally:
            self.busy.discard(me)

    # ---- named checks ---------------------------------------------------------------------------
    def open_file(self, args: tuple[Any, ...]) -> None:
        path, mode, flags = args
        writing = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and bool(flags & WRITE_FLAGS))
        self.refuse("writing" if writing else "reading", path)
        if writing and self.quota is not None:
            self.account(path)

    QUOTA_EVERY = 16

    def account(self, path: Any) -> None:
        """OSError(EDQUOT) once scratch holds too many files or bytes (the tmpfs does this exactly
        where the kernel layers are available)."""
        import errno

        limit_bytes, limit_files = self.quota or (0, 0)
        me = _thread.get_ident()
        self.busy.add(me)
        try:
            if isinstance(path, (str, bytes)) and not os.path.exists(path):
                self.created += 1
                if self.created > limit_files:
                    raise OSError(errno.EDQUOT, f"scratch quota: at most {limit_files:,} files")
            self.writes_seen += 1
            if self.writes_seen % self.QUOTA_EVERY == 1:
                used = sum(os.lstat(os.path.join(d, f)).st_size for root in self.writes
                           for d, _, files in os.walk(root) for f in files)
                if used >= limit_bytes:
                    raise OSError(errno.EDQUOT, f"scratch quota: at most {limit_bytes >> 20:,} MiB")
        finally:
            self.busy.discard(me)

    @staticmethod
    def network(args: tuple[Any, ...]) -> None:
        raise PermissionError("network access is disabled in the rlm sandbox")

    @staticmethod
    def process(args: tuple[Any, ...]) -> None:
        raise PermissionError("starting processes is disabled in the rlm sandbox")

    def import_module(self, args: tuple[Any, ...]) -> None:
        module = str(args[0])
        if module in FORBIDDEN_IMPORTS or module.split(".")[0] in FORBIDDEN_IMPORTS:
            raise ImportError(f"module {module!r} is not available in the rlm sandbox")
        filename = args[1] if len(args) > 1 else None
        if isinstance(filename, str) and filename.endswith((".so", ".pyd", ".dylib")):
            if not self.inside(os.path.realpath(filename), self.pyroots):
                raise ImportError(f"native module {module!r} outside the Python installation is refused")

    @staticmethod
    def native_code(args: tuple[Any, ...]) -> None:
        raise PermissionError("native code is disabled in the rlm sandbox")

    def signal(self, args: tuple[Any, ...]) -> None:
        if args and args[0] == self.pid:
            return
        raise PermissionError("sending signals to other processes is disabled in the rlm sandbox")

    @staticmethod
    def thread_signal(args: tuple[Any, ...]) -> None:
        raise PermissionError("sending signals to other processes is disabled in the rlm sandbox")

    @staticmethod
    def resource_limits(args: tuple[Any, ...]) -> None:
        raise PermissionError("changing resource limits is disabled in the rlm sandbox")

    def sqlite_connect(self, args: tuple[Any, ...]) -> None:
        """Read-only URIs (immutable=1 or mode=ro, and no other parameter) may read; any other
        database is a file write, allowed only in scratch."""
        database = args[0] if args else ""
        text = os.fspath(database) if not isinstance(database, int) else ""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if text.startswith("file:"):
            target, _, query = text[5:].partition("?")
            params = [p for p in query.split("&") if p]
            if params and all(p in ("immutable=1", "mode=ro") for p in params):
                self.refuse("reading", target)
                return
            self.refuse("writing", target)
            return
        if text not in ("", ":memory:"):
            self.refuse("writing", text)

    def writer(self, positions: tuple[int, ...]) -> Check:
        def check(args: tuple[Any, ...]) -> None:
            self.refuse("writing", *(args[i] for i in positions if i < len(args)))
        return check

    def lister(self, position: int, hidden_ok: bool = False) -> Check:
        def check(args: tuple[Any, ...]) -> None:
            if position < len(args):
                self.refuse("listing", args[position], hidden_ok=hidden_ok)
        return check

    def copier(self, positions: tuple[int, ...]) -> Check:
        write = self.writer(positions)

        def check(args: tuple[Any, ...]) -> None:
            write(args)
            self.refuse("reading", args[0])
        return check

    # ---- dispatch -------------------------------------------------------------------------------
    def check_for(self, event: str) -> Check | None:
        """The check an event needs (computed once per event name)."""
        if event == "open":
            return self.open_file
        if event == "import":
            return self.import_module
        if event in PROCESS_EVENTS:
            return self.process
        if event.startswith(NETWORK_PREFIXES):
            return self.network
        if event.startswith("ctypes.") or event in ("sqlite3.enable_load_extension", "sqlite3.load_extension"):
            return self.native_code
        if event == "os.kill":
            return self.signal
        if event == "signal.pthread_kill":
            return self.thread_signal
        if event.startswith("resource.") and event != "resource.getrlimit":
            return self.resource_limits
        if event == "sqlite3.connect":
            return self.sqlite_connect
        if event in ("shutil.copyfile", "shutil.copytree"):
            return self.copier(WRITE_EVENTS[event])
        if event in WRITE_EVENTS:
            return self.writer(WRITE_EVENTS[event])
        if event in LIST_EVENTS:
            # a glob's pattern may name hidden bookkeeping: the scandir it makes is refused
            # there, which glob takes as "no matches", as if nothing were there
            return self.lister(LIST_EVENTS[event], hidden_ok=event == "glob.glob")
        return None

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if _thread.get_ident() in self.busy:
            return
        try:
            check = self.cache[event]
        except KeyError:
            check = self.cache[event] = self.check_for(event)
        if check is not None:
            check(args)


def install(read_roots: list[str], write_roots: list[str], python_roots: list[str],
            list_roots: list[str] | None = None, quota: tuple[int, int] | None = None,
            hidden: list[str] | None = None) -> AuditPolicy:
    """Install the hook for good (audit hooks cannot be removed)."""
    policy = AuditPolicy(read_roots, write_roots, python_roots, list_roots, quota, hidden)
    sys.addaudithook(policy.hook)
    return policy


def forget_modules() -> None:
    """Drop forbidden modules that setup imported, so model code must import them anew (which the
    hook refuses: an import served from sys.modules raises no audit event)."""
    for name in list(sys.modules):
        if name.split(".")[0] in FORBIDDEN_IMPORTS:
            del sys.modules[name]
