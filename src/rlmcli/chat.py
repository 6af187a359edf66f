"""`rlm chat`: questions one after another over one workspace, in one sandbox.

The sandbox process stays alive between questions and is never reset, so the variables the model
built for one question are there for the next (the MCP `repl` sessions keep theirs the same way).
Each question is a run of its own, saved and traced like `rlm ask`, that follows the one before:
it starts with the earlier questions, answers, citations and variable names (followup.py).

Ctrl-C during a question ends that run as interrupted (the engine saves the partial answer and
the trace) and stops the cell the sandbox was running, keeping its variables when the child stops
within a few seconds; a child that does not is restarted, and the next question is told its
variables are gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlmcli.config import Settings
from rlmcli.engine import events as ev
from rlmcli.engine.loop import RunResult
from rlmcli.followup import Exchange, budget_chars, context_text
from rlmcli.sandbox.interface import CellResult, RequestHandler
from rlmcli.workspace.store import Workspace


class KeptRepl:
    """A started sandbox whose `reset` keeps every variable: what makes a chat's REPL persist."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.layers: list[str] = list(sandbox.layers)
        self.restarts = 0  # restarts seen (variables lost), counted by the session

    @property
    def on_request(self) -> RequestHandler | None:
        return self.sandbox.on_request  # type: ignore[no-any-return]

    @on_request.setter
    def on_request(self, handler: RequestHandler | None) -> None:
        self.sandbox.on_request = handler

    @property
    def max_output(self) -> int:
        return int(self.sandbox.max_output)

    def run(self, code: str, timeout: float | None = None, wall: float | None = None) -> CellResult:
        result: CellResult = self.sandbox.run(code, timeout=timeout, wall=wall)
        if result.restarted:
            self.restarts += 1
        return result

    def reset(self) -> None:
        """Not between a chat's questions."""

    def close(self) -> None:
        """The session closes the sandbox, not a run."""


class ChatSession:
    """One conversation: a workspace, a sandbox kept alive, and the exchanges so far."""

    def __init__(self, settings: Settings, ws: Workspace, earlier: list[Exchange] | None = None) -> None:
        from rlmcli.ask import sandbox_limits
        from rlmcli.sandbox.process import Sandbox

        self.settings = settings
        self.ws = ws
        self.sandbox = Sandbox(ws.root, level=settings.sandbox, limits=sandbox_limits(settings)).start()
        self.repl = KeptRepl(self.sandbox)
        self.exchanges: list[Exchange] = list(earlier or [])  # earlier runs (-c): their variables are not here
        self.results: list[RunResult] = []

    def ask(self, question: str, observer: ev.Observer | None = None, *, stream: bool = False,
            shape: Any = None) -> RunResult:
        """Run one question as a follow-up of the ones before. Ctrl-C ends it as `interrupted`."""
        from rlmcli.ask import run_question

        names: list[str] = []
        restarts = self.repl.restarts

        def collect(event: ev.Event) -> None:
            if isinstance(event, ev.CellOutput) and event.depth == 0:
                if event.restarted:
                    names.clear()  # what earlier cells of this run set is gone too
                names.extend(n for n in event.changed if n not in names)

        previous = self.exchanges[-1].run_id if self.exchanges else None
        context = context_text(self.exchanges, budget_chars(self.settings.model or ""))
        emit = ev.fanout(collect, observer) if observer is not None else collect
        settled = True
        try:
            result = run_question(self.settings, self.ws, question, emit, stream=stream, sandbox=self.repl,
                                  shape=shape, context=context, follows=previous)
        finally:
            settled = self.settle()
            if not settled:
                self.repl.restarts += 1
        if self.repl.restarts != restarts:
            for earlier in self.exchanges:
                earlier.alive = False
        self.exchanges.append(Exchange(result.run_id, question, result.answer, result.status, previous,
                                       cited=list(dict.fromkeys(c.text for c in result.citations)),
                                       variables=names[:30], alive=settled))
        self.results.append(result)
        return result

    def settle(self) -> bool:
        """After a Ctrl-C: stop the cell left running. False when the variables were lost."""
        import signal
        import threading

        if not self.sandbox.busy:
            return True
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None  # a second Ctrl-C waits
        try:
            return bool(self.sandbox.interrupt())
        finally:
            if main:
                signal.signal(signal.SIGINT, old)

    def variables(self) -> str:
        """The REPL's variables with their types and sizes (SHOW_VARS)."""
        self.sandbox.on_request = None
        out = self.sandbox.run("_ = SHOW_VARS()")
        if out.restarted:
            self.repl.restarts += 1
            for earlier in self.exchanges:
                earlier.alive = False
        return out.full_output().strip() or "(no variables)"

    def cost(self) -> dict[str, Any]:
        """Calls, tokens and US dollars of this session's questions (None: a price is unknown)."""
        calls = tokens = 0
        cost: float | None = 0.0
        for r in self.results:
            u = r.usage or {}
            calls += int(u.get("calls") or 0)
            tokens += int(u.get("prompt_tokens") or 0) + int(u.get("completion_tokens") or 0)
            cost = None if cost is None or u.get("cost") is None else cost + float(u["cost"])
        return {"questions": len(self.results), "calls": calls, "tokens": tokens, "cost": cost}

    def last_trace(self) -> Path | None:
        return Path(self.results[-1].trace) if self.results else None

    def close(self) -> None:
        self.sandbox.close()
