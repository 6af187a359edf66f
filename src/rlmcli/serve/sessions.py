"""Persistent sandboxes for the MCP `repl` tool: the client's own model drives the exploration.

Each session is one sandbox over one workspace (the same child process, limits and helpers as a
run), kept between calls so variables survive. Model requests from inside it (`llm_query`, ...)
are served by an `Engine` that never runs its loop, under one budget per session; with no model
configured they go to the client through `sample` (MCP sampling), when the client offers it.

What keeps a careless or hostile client from wearing the server down:
* at most `cap` sessions, counted under the lock with those still starting; to open another the
  least recently used *idle* one is closed, and when every one is running a cell the call gets a
  busy reply (so is a second call on a session whose cell still runs);
* a timer closes sessions idle for `idle` seconds, whether or not anyone opens a new one;
* after each cell the child's threads are counted from /proc: a thread the cell left running
  (it would go on using CPU and memory between calls) restarts the child;
* any failure of the channel to the child (a cell that closed its pipe, a child that died between
  calls) restarts the child, with a clear error for the call that met it: a session that fails
  once does not fail for good.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlmcli.config import Settings
from rlmcli.errors import UsageError
from rlmcli.serve.pools import REPL_BUSY, Busy, Ticket
from rlmcli.serve.sandboxes import alive, interrupt, start_sandbox, threads_of
from rlmcli.workspace.store import Workspace

MAX_SESSIONS = 8
IDLE_SECONDS = 30 * 60
OUTPUT_CHARS = 20_000  # of one cell's output returned to the client
THREAD_CHECKS = 20  # looks, 10 ms apart, for a cell's finished threads to be gone from /proc
LOST = "The sandbox was restarted: all variables were lost."

Sampler = Callable[[str], str]  # prompt -> the client's model's reply

SAMPLED_BATCH = 100  # prompts of one llm_batch answered by the client's sampling, one request each


@dataclass
class Session:
    id: str
    workspace: Workspace
    sandbox: Any
    engine: Any | None  # serves llm_query with the configured models; None without a model
    threads: int = 0  # the child's own threads before any cell ran
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while a cell runs
    used: float = field(default_factory=time.monotonic)
    cells: int = 0
    closed: bool = False
    notice: str = ""  # for the next call: what happened to the session since the last reply


class Sessions:
    def __init__(self, settings: Settings, cap: int = MAX_SESSIONS, idle: float = IDLE_SECONDS) -> None:
        self.settings, self.cap, self.idle = settings, max(1, cap), idle
        self.lock = threading.Lock()
        self.open: dict[str, Session] = {}
        self._starting = 0
        self._closed = False

    def _start(self, ws: Workspace) -> Session:
        sandbox = start_sandbox(str(ws.root), self.settings)
        engine = None
        if self.settings.model:
            from rlmcli.ask import limits_of, model_config, sandbox_factory
            from rlmcli.engine.loop import Engine

            engine = Engine(ws.root, model_config(self.settings), sandbox_factory(self.settings),
                            limits_of(self.settings), sandbox=sandbox)
        return Session(secrets.token_hex(6), ws, sandbox, engine, threads=threads_of(sandbox))

    def _make_room(self) -> Session | None:
        """Under self.lock: the idle session to close so one more fits, None when one fits already;
        Busy when every session is running a cell."""
        if len(self.open) + self._starting < self.cap:
            return None
        for victim in sorted(self.open.values(), key=lambda s: s.used):
            if victim.lock.acquire(blocking=False):  # idle, and no cell can start on it now
                del self.open[victim.id]
                victim.closed = True
                victim.lock.release()
                return victim
        raise Busy(REPL_BUSY.format(n=self.cap))

    def get(self, session_id: str | None, ws_of: Callable[[], Workspace]) -> Session:
        with self.lock:
            if self._closed:
                raise Busy("the server is shutting down")
            if session_id:
                found = self.open.get(session_id)
                if found is None:
                    raise UsageError(f"no repl session {session_id[:40]!r} (it may have been idle for over "
                                     f"{self.idle / 60:g} minutes, or closed to make room): omit `session` "
                                     "to start a new one")
                return found
            victim = self._make_room()
            self._starting += 1
        try:
            if victim is not None:
                victim.sandbox.close()
            session = self._start(ws_of())
        except BaseException:
            with self.lock:
                self._starting -= 1
            raise
        with self.lock:
            self._starting -= 1
            if not self._closed:
                self.open[session.id] = session
                return session
        session.sandbox.close()
        raise Busy("the server is shutting down")

    def run(self, session: Session, code: str, sample: Sampler | None, ticket: Ticket | None = None) -> dict[str, Any]:
        if not session.lock.acquire(blocking=False):
            raise Busy(f"repl session {session.id} is running a cell: wait for its reply, or use another session")
        try:
            if session.closed:
                raise UsageError(f"repl session {session.id} was closed (idle, or to make room): omit `session` "
                                 "to start a new one")
            session.used = time.monotonic()
            return self._cell(session, code, sample, ticket or Ticket())
        finally:
            session.used = time.monotonic()
            session.lock.release()

    def _cell(self, session: Session, code: str, sample: Sampler | None, ticket: Ticket) -> dict[str, Any]:
        from rlmcli.sandbox.interface import CellResult

        notes = [session.notice] if session.notice else []
        session.notice = ""
        if not alive(session.sandbox):  # it died after the last cell (a cell that closed its channel)
            self._restart(session)
            notes.append(f"The sandbox process had ended after the previous cell. {LOST}")
        session.sandbox.on_request = self._handler(session, sample)
        try:
            with ticket.hook(lambda: interrupt(session.sandbox)):
                result = session.sandbox.run(code)
        except Exception as exc:  # noqa: BLE001 - the channel failed where the sandbox does not recover
            self._restart(session)
            result = CellResult(stderr=f"SandboxError: the channel to the sandbox failed ({type(exc).__name__}: "
                                f"{str(exc)[:200]}). {LOST}\n", error=True, restarted=True)
        session.cells += 1
        if ticket.cancelled:  # the child was killed (and restarted): the next reply says so
            session.notice = f"The previous cell was cancelled by the client and stopped. {LOST}"
        elif not result.restarted:
            stray = self._stray_threads(session)
            if stray:
                self._restart(session)
                result.error, result.restarted = True, True
                result.stderr += (f"SandboxError: the cell left {stray} thread{'s' if stray > 1 else ''} running "
                                  f"after it returned; threads must finish within their cell (join them). {LOST}\n")
        output = result.for_model(OUTPUT_CHARS)
        if notes:
            output = "\n".join(notes) + "\n" + output
        return {"session": session.id, "output": output, "error": result.error,
                "timed_out": result.timed_out, "restarted": result.restarted or bool(notes), "final": result.final,
                "variables_changed": result.changed, "seconds": round(result.duration, 3),
                "workspace": str(session.workspace.root)}

    def _stray_threads(self, session: Session) -> int:
        extra = 0
        for _ in range(THREAD_CHECKS):
            extra = threads_of(session.sandbox) - session.threads
            if extra <= 0:
                return 0
            time.sleep(0.01)  # a joined thread leaves /proc a moment after join() returns
        return extra

    @staticmethod
    def _restart(session: Session) -> None:
        """A fresh child for the session (the same Sandbox object, which the engine also holds)."""
        interrupt(session.sandbox)
        session.sandbox.reset()  # a dead child is restarted

    def _handler(self, session: Session, sample: Sampler | None) -> Callable[[str, dict[str, Any]], Any]:
        if session.engine is not None:
            return session.engine.serve  # type: ignore[no-any-return]

        def by_sampling(kind: str, payload: dict[str, Any]) -> Any:
            if sample is None:
                raise PermissionError("no model is configured for this server (start `rlm mcp --model ...`) and "
                                      "the client does not offer sampling: llm_query is unavailable here")
            if kind == "llm_query":
                return sample(str(payload.get("prompt", "")))
            if kind == "llm_batch":
                prompts = payload.get("prompts", [])
                if not isinstance(prompts, list):  # a string would become one request per character
                    raise TypeError("llm_batch takes a list of prompts")
                if len(prompts) > SAMPLED_BATCH:  # each one is a request to the client's model
                    raise ValueError(f"llm_batch through the client's sampling takes at most {SAMPLED_BATCH} "
                                     f"prompts, not {len(prompts):,}")
                return [sample(str(p)) for p in prompts]
            raise PermissionError(f"{kind} needs a model configured on the server (rlm mcp --model ...)")

        return by_sampling

    def reap(self, now: float) -> int:
        """Close the sessions idle for `idle` seconds (never one running a cell)."""
        stale = []
        with self.lock:
            for s in list(self.open.values()):
                if now - s.used >= self.idle and s.lock.acquire(blocking=False):
                    del self.open[s.id]
                    s.closed = True
                    s.lock.release()
                    stale.append(s)
        for s in stale:
            s.sandbox.close()
        return len(stale)

    def close(self) -> None:
        with self.lock:
            self._closed = True
            sessions, self.open = list(self.open.values()), {}
        for s in sessions:
            s.closed = True
            s.sandbox.close()
