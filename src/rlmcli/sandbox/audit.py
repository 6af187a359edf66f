"""The audit-hook layer: a Python audit hook that refuses, with readable errors, what the kernel
layers also stop (and, at `basic`, stands alone as a seat belt).

Each kind of action has a named check; `AuditPolicy.hook` looks the event up once and caches
which check (if any) applies, so the hook costs a dict lookup for events nobody polices. Calls
CPython raises no event for (FIFOs, device nodes, memfds, terminals, scheduling other processes,
starting threads) are wrapped to raise one (`raise_missing_events`); SQLite connections get an
authorizer that refuses ATTACH (which VACUUM INTO also uses).
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
    "shutil.rmtree": (0,), "shutil.move": (0, 1),
    "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.make_archive": (0,),
}
REFUSED_EVENTS = {  # events of calls model code has no use for, with the reason given
    "os.mkfifo": "making FIFOs is disabled in the rlm sandbox",
    "os.mknod": "making device nodes and FIFOs is disabled in the rlm sandbox",
    "os.openpty": "terminals are disabled in the rlm sandbox",
    "os.memfd_create": "memory files (memfd_create) are disabled in the rlm sandbox: they hold memory outside its limits",
}
SCHEDULING_EVENTS = {"os.setpriority": 1, "os.sched_setscheduler": 0, "os.sched_setparam": 0,
                     "os.sched_setaffinity": 0}  # event: position of the pid (0 or our own pid allowed)
# Functions CPython runs without an audit event, and the event the kernel raises for them.
MISSING_EVENTS = ("mkfifo", "mknod", "openpty", "memfd_create", "setpriority", "sched_setscheduler",
                  "sched_setparam", "sched_setaffinity")
SQLITE_ATTACH, SQLITE_DENY, SQLITE_OK = 24, 1, 0
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
                 hidden: list[str] | None = None, native_roots: list[str] | None = None,
                 max_threads: int = 0) -> None:
        list_roots = list_roots or []
        # Extension modules load only from here (the interpreter's standard library), whatever
        # their name or loader: the path is checked as given and as resolved.
        self.native_roots = _dirs(native_roots if native_roots is not None else python_roots)
        self.max_threads = max_threads
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
        if filename is not None:  # CPython names a file only when it loads an extension module
            self.native_module(module, filename)

    def native_module(self, module: str, filename: Any) -> None:
        """Refuse an extension module unless its path, as given (absolute, no '..') and resolved,
        lies in the standard library: a link swapped between the check and the load cannot
        point elsewhere, since model code cannot write there."""
        try:
            path = os.fsdecode(os.fspath(filename))
        except TypeError:
            path = ""
        given = os.path.normpath(os.path.join(os.getcwd(), path)) if path else ""
        if not path or ".." in path.split("/") or not self.inside(given, self.native_roots) \
                or not self.inside(os.path.realpath(given), self.native_roots):
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
    def refused(reason: str) -> Check:
        def check(args: tuple[Any, ...]) -> None:
            raise PermissionError(reason)
        return check

    def scheduling(self, position: int) -> Check:
        def check(args: tuple[Any, ...]) -> None:
            if position < len(args) and args[position] not in (0, self.pid):
                raise PermissionError("changing the scheduling of other processes is disabled in the rlm sandbox")
        return check

    def thread(self, args: tuple[Any, ...]) -> None:
        if self.max_threads and _thread_count() >= self.max_threads:
            raise RuntimeError(f"can't start new thread: the rlm sandbox allows {self.max_threads} threads")

    @staticmethod
    def sqlite_handle(args: tuple[Any, ...]) -> None:
        """A connection made other than by `sqlite3.connect` (which gives each one the authorizer
        refusing ATTACH, see `guard_sqlite`): the class itself, a fresh copy of `_sqlite3`."""
        if _thread.get_ident() not in _sqlite_opening:
            raise PermissionError("open SQLite databases with sqlite3.connect() in the rlm sandbox")

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
        if event == "sqlite3.connect/handle":
            return self.sqlite_handle
        if event in REFUSED_EVENTS:
            return self.refused(REFUSED_EVENTS[event])
        if event in SCHEDULING_EVENTS:
            return self.scheduling(SCHEDULING_EVENTS[event])
        if event == "_thread.start_new_thread":
            return self.thread
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


_sqlite_opening: set[int] = set()  # threads inside the guarded sqlite3.connect


def _sqlite_authorizer(action: int, *args: Any) -> int:
    return SQLITE_DENY if action == SQLITE_ATTACH else SQLITE_OK


def guard_sqlite() -> None:
    """`sqlite3.connect` gives every connection an authorizer that refuses ATTACH, so no SQL
    opens a second database file (an outside one, the index read-write, or VACUUM INTO's
    target). The audit event of a new connection cannot set it (the object is not initialized
    yet), so the event only checks that the connection came through here."""
    import _sqlite3
    import sqlite3
    import sqlite3.dbapi2

    original = _sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        me = _thread.get_ident()
        _sqlite_opening.add(me)
        try:
            conn = original(*args, **kwargs)
        finally:
            _sqlite_opening.discard(me)
        conn.set_authorizer(_sqlite_authorizer)
        return conn

    connect.__doc__ = original.__doc__
    for module in (sqlite3, sqlite3.dbapi2, _sqlite3):
        setattr(module, "connect", connect)  # noqa: B010 - the module's own function, replaced


def _thread_count() -> int:
    """Threads alive now, the main one included."""
    count = getattr(_thread, "_count", None)
    if count is not None:
        return int(count()) + 1
    import threading

    return threading.active_count()


def _audited(event: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        sys.audit(event, *args)
        return function(*args, **kwargs)
    call.__name__, call.__doc__ = function.__name__, function.__doc__
    return call


def raise_missing_events() -> None:
    """Make the calls CPython runs silently raise an audit event the policy can check: in `os`
    and `posix` (the same functions), and thread starts in `_thread` and `threading`. A seat belt:
    a fresh copy of a built-in module (`_imp.create_builtin`) has the originals back, which is
    why the kernel layers refuse the same calls themselves."""
    import posix
    import threading

    for name in MISSING_EVENTS:
        original = getattr(posix, name, None)
        if original is not None:
            wrapped = _audited(f"os.{name}", original)
            setattr(posix, name, wrapped)
            setattr(os, name, wrapped)
    for module_name, alias in (("start_new_thread", "_start_new_thread"), ("start_joinable_thread", "_start_joinable_thread"),
                               ("start_new", None)):
        original = getattr(_thread, module_name, None)
        if original is None:
            continue
        wrapped = _audited("_thread.start_new_thread", original)
        setattr(_thread, module_name, wrapped)
        if alias and getattr(threading, alias, None) is original:
            setattr(threading, alias, wrapped)


def install(read_roots: list[str], write_roots: list[str], python_roots: list[str],
            list_roots: list[str] | None = None, quota: tuple[int, int] | None = None,
            hidden: list[str] | None = None, native_roots: list[str] | None = None,
            max_threads: int = 0) -> AuditPolicy:
    """Install the hook for good (audit hooks cannot be removed)."""
    policy = AuditPolicy(read_roots, write_roots, python_roots, list_roots, quota, hidden, native_roots, max_threads)
    raise_missing_events()
    guard_sqlite()
    sys.addaudithook(policy.hook)
    return policy
