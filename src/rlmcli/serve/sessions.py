"""Persistent sandboxes for the MCP `repl` tool: the client's own model drives the exploration.

Each session is one sandbox over one workspace (the same child process, limits and helpers as a
run), kept between calls so variables survive. Model requests from inside it (`llm_query`, ...)
are served by an `Engine` that never runs its loop, under one budget per session; with no model
configured they go to the client through `sample` (MCP sampling), when the client offers it.
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
from rlmcli.workspace.store import Workspace

MAX_SESSIONS = 8  # the least recently used one is closed to make room
IDLE_SECONDS = 30 * 60
OUTPUT_CHARS = 20_000  # of one cell's output returned to the client

Sampler = Callable[[str], str]  # prompt -> the client's model's reply


@dataclass
class Session:
    id: str
    workspace: Workspace
    sandbox: Any
    engine: Any | None  # serves llm_query with the configured models; None without a model
    lock: threading.Lock = field(default_factory=threading.Lock)
    used: float = field(default_factory=time.monotonic)
    cells: int = 0


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.open: dict[str, Session] = {}

    def _start(self, ws: Workspace) -> Session:
        from rlmcli.ask import limits_of, model_config, sandbox_limits
        from rlmcli.sandbox.process import Sandbox

        sandbox = Sandbox(ws.root, level=self.settings.sandbox, limits=sandbox_limits(self.settings)).start()
        engine = None
        if self.settings.model:
            from rlmcli.ask import sandbox_factory
            from rlmcli.engine.loop import Engine

            engine = Engine(ws.root, model_config(self.settings), sandbox_factory(self.settings),
                            limits_of(self.settings), sandbox=sandbox)
        return Session(secrets.token_hex(6), ws, sandbox, engine)

    def _evict(self) -> None:
        now = time.monotonic()
        stale = [s for s in self.open.values() if now - s.used > IDLE_SECONDS]
        while len(self.open) - len(stale) >= MAX_SESSIONS:
            stale.append(min((s for s in self.open.values() if s not in stale), key=lambda s: s.used))
        for s in stale:
            self.open.pop(s.id, None)
            s.sandbox.close()

    def get(self, session_id: str | None, ws_of: Callable[[], Workspace]) -> Session:
        with self.lock:
            if session_id:
                found = self.open.get(session_id)
                if found is None:
                    raise UsageError(f"no repl session {session_id!r} (it may have been idle for over "
                                     f"{IDLE_SECONDS // 60} minutes): omit `session` to start a new one")
                return found
            self._evict()
        session = self._start(ws_of())
        with self.lock:
            self.open[session.id] = session
        return session

    def run(self, session: Session, code: str, sample: Sampler | None) -> dict[str, Any]:
        with session.lock:  # one cell at a time per session; other sessions run in parallel
            session.used = time.monotonic()
            session.sandbox.on_request = self._handler(session, sample)
            result = session.sandbox.run(code)
            session.cells += 1
            session.used = time.monotonic()
        return {"session": session.id, "output": result.for_model(OUTPUT_CHARS), "error": result.error,
                "timed_out": result.timed_out, "restarted": result.restarted, "final": result.final,
                "variables_changed": result.changed, "seconds": round(result.duration, 3),
                "workspace": str(session.workspace.root)}

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
                return [sample(str(p)) for p in payload.get("prompts", [])]
            raise PermissionError(f"{kind} needs a model configured on the server (rlm mcp --model ...)")

        return by_sampling

    def close(self) -> None:
        with self.lock:
            sessions, self.open = list(self.open.values()), {}
        for s in sessions:
            s.sandbox.close()
