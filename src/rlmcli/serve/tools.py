"""What the MCP tools do, as plain blocking functions over workspaces (no MCP types here).

Each returns a JSON-ready dict or raises with one clear message; mcp_server.py runs them on the
pool for their kind of work (pools.py) and turns failures into tool errors. Each takes the call's
`Ticket`, and hooks onto it whatever stops its work when the call is cancelled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlmcli.config import Settings
from rlmcli.engine import events as ev
from rlmcli.engine.budget import Budget, BudgetExceeded
from rlmcli.records import Limit
from rlmcli.serve.access import Access, page_uri
from rlmcli.serve.pools import Pools, Ticket
from rlmcli.serve.sandboxes import Reaper, SandboxPool, interrupt, start_sandbox
from rlmcli.serve.sessions import IDLE_SECONDS, MAX_SESSIONS, Sampler, Sessions
from rlmcli.workspace.store import Workspace

GREP_HITS = 200
GREP_SANDBOXES = 2  # grep calls at once, each in its own warm sandbox
GREP_IDLE = 5 * 60  # seconds a warm grep sandbox is kept unused (at most the sessions' idle time)
SEARCH_SECONDS = 30.0  # an in-process search is stopped after this


@dataclass
class Stoppable(Budget):
    """A run's budget that a cancelled call stops at the run's next model call."""

    stopped: bool = False

    def check(self) -> None:
        self._stop_if_cancelled()
        super().check()

    def reserve(self, *args: Any, **kwargs: Any) -> Any:
        self._stop_if_cancelled()  # before a request is booked, so a cancelled run sends nothing more
        return super().reserve(*args, **kwargs)

    def _stop_if_cancelled(self) -> None:
        if self.stopped:
            self.hit(Limit.CANCELLED)
            raise BudgetExceeded(Limit.CANCELLED, "the client cancelled the call")


def cite(doc: str, page: int, line: int | None = None) -> str:
    return f"[{doc} p.{page}" + (f" l.{line}]" if line else "]")


class Tools:
    def __init__(self, settings: Settings, access: Access, max_sessions: int = MAX_SESSIONS,
                 idle: float = IDLE_SECONDS) -> None:
        self.settings = settings
        self.access = access
        self.sessions = Sessions(settings, max_sessions, idle)
        self.sandboxes = SandboxPool(settings, GREP_SANDBOXES, min(idle, GREP_IDLE))
        self.pools = Pools(sessions=max_sessions, sandboxes=GREP_SANDBOXES)
        self.reaper = Reaper(min(idle, GREP_IDLE) / 4, [self.sessions.reap, self.sandboxes.reap]).start()

    def _docs_of(self, ws: Workspace, doc: str | None) -> None:
        if doc and not ws.reader.select(doc):
            raise ValueError(f"no document matches {doc!r}: see list_documents")

    def list_documents(self, workspace: str | None) -> dict[str, Any]:
        ws = self.access.open(workspace, need_documents=False)
        docs = []
        for doc, rec in ws.documents().items():
            docs.append({"doc": doc, "title": rec.card.get("title") or rec.name or doc, "type": rec.type,
                         "pages": rec.pages, "tokens": rec.tokens, "warnings": rec.warnings})
        return {"workspace": str(ws.root), "documents": docs, "totals": ws.manifest()["totals"]}

    def search(self, query: str, workspace: str | None, doc: str | None, k: int,
               ticket: Ticket | None = None) -> dict[str, Any]:
        from rlmcli.search import search_workspace
        from rlmcli.workspace.query import SearchStopped, check_query

        if not query.strip():
            raise ValueError("empty query: give some words to search for")
        check_query(query)  # too long, or too many words: refused before the workspace is opened
        ws = self.access.open(workspace)
        self._docs_of(ws, doc)
        deadline = time.monotonic() + SEARCH_SECONDS

        def stop() -> bool:
            return (ticket is not None and ticket.cancelled) or time.monotonic() > deadline

        try:
            found = search_workspace(ws, query, k=k, doc=doc, stop=stop)
        except SearchStopped:
            why = "the call was cancelled" if ticket is not None and ticket.cancelled else \
                f"it ran over {SEARCH_SECONDS:g} s"
            raise ValueError(f"search stopped: {why}; use fewer or rarer words, or pass `doc`") from None
        for p in found:
            p["citation"] = cite(p["doc"], p["page"], p["line"])
        return {"query": query, "workspace": str(ws.root), "passages": found}

    def page_text(self, workspace: str | None, doc: str, page: int) -> tuple[str, int, int, str]:
        """(doc id, page, pages, text); a clear error for an unknown document or page."""
        ws = self.access.open(workspace)
        name = ws.reader.resolve(doc)
        pages = ws.reader.pages(name)
        if not 1 <= page <= pages:
            raise ValueError(f"{name} has pages 1 to {pages}, not {page}")
        return name, page, pages, ws.reader.read_page(name, page)

    def read_page(self, doc: str, page: int, workspace: str | None) -> dict[str, Any]:
        name, page, pages, text = self.page_text(workspace, doc, page)
        return {"doc": name, "page": page, "pages": pages, "citation": cite(name, page),
                "uri": page_uri(self.access.workspace_spec(workspace), name, page), "text": text}

    def grep(self, pattern: str, workspace: str | None, doc: str | None, max_hits: int,
             ticket: Ticket | None = None) -> dict[str, Any]:
        """Runs in a pooled sandbox (running only this fixed cell): a pathological regex hits the
        cell's time limit, not the server, and a cancelled call kills it."""
        if not pattern:
            raise ValueError("empty pattern")
        ws = self.access.open(workspace)
        self._docs_of(ws, doc)
        code = (f"import json as _j\n_h = grep({pattern!r}, doc={doc!r}, max_hits={int(max_hits)})\n"
                "print(_j.dumps({'hits': [[h.doc, h.page, h.line, h.text[:500]] for h in _h], 'cut': _h.truncated}))")
        sandbox = self.sandboxes.take(str(ws.root))
        try:
            sandbox.reset()
            with (ticket or Ticket()).hook(lambda: interrupt(sandbox)):
                result = sandbox.run(code)
        finally:
            self.sandboxes.give_back(str(ws.root), sandbox)
        if ticket is not None and ticket.cancelled:
            raise ValueError("grep stopped: the call was cancelled")
        if result.error or result.timed_out:
            lines = result.full_output().strip().splitlines()
            raise ValueError("grep failed: " + (lines[-1] if lines else "timed out"))
        data = json.loads(result.stdout)  # our own cell's JSON, size-capped by the sandbox
        hits = [{"doc": d, "page": p, "line": n, "text": t, "citation": cite(d, p, n)} for d, p, n, t in data["hits"]]
        return {"pattern": pattern, "workspace": str(ws.root), "hits": hits, "truncated": bool(data["cut"])}

    def _ingest(self, paths: list[str], workspace: str | None) -> tuple[Workspace, Any]:
        from rlmcli.workspace.ingest import ingest

        checked = [self.access.check_input(p) for p in paths]
        target = self.access.workspace_spec(workspace) if (workspace or self.access.default_workspace) else None
        return ingest(checked, target, ocr=self.settings.ocr)

    def ingest(self, paths: list[str], workspace: str | None) -> dict[str, Any]:
        ws, report = self._ingest(paths, workspace)
        return {"workspace": str(ws.root), "added": report.added, "replaced": report.replaced,
                "unchanged": report.unchanged, "duplicates": [list(d) for d in report.duplicates],
                "failed": [{"name": n, "error": e} for n, e in report.failed],
                "skipped": [{"name": n, "why": w} for n, w in report.skipped]
                + [{"name": n, "why": f"unreadable: {e}"} for n, e in report.unreadable],
                "pages": report.pages, "tokens": report.tokens}

    def ask(self, question: str, workspace: str | None, files: list[str] | None,
            observer: ev.Observer | None, ticket: Ticket | None = None,
            schema: dict[str, Any] | str | None = None, schema_multi: bool = False) -> dict[str, Any]:
        from rlmcli.ask import answer_record, limits_of, model_config, run_question

        if not question.strip():
            raise ValueError("empty question")
        shape = None
        if schema is not None:
            from rlmcli.schema import AnswerShape

            shape = AnswerShape.from_spec(schema, schema_multi)  # a bad schema: a tool error, nothing spent
        elif schema_multi:
            raise ValueError("schema_multi needs a schema")
        if files:
            ws, report = self._ingest(files, workspace)
            if not ws.exists() or not ws.documents():
                failed = "; ".join(f"{n}: {e}" for n, e in report.failed)
                raise ValueError(f"nothing to ask about: {failed or 'no input could be ingested'}")
        else:
            ws = self.access.open(workspace)
        model_config(self.settings)  # no model: say so before a sandbox starts
        # The run's own sandbox and budget, so a cancelled call can stop both.
        budget = Stoppable(limits_of(self.settings))
        sandbox = start_sandbox(str(ws.root), self.settings)
        def stop() -> None:
            budget.stopped = True
            interrupt(sandbox)

        try:
            with (ticket or Ticket()).hook(stop):
                result = run_question(self.settings, ws, question, observer, sandbox=sandbox, budget=budget, shape=shape)
        finally:
            sandbox.close()
        return answer_record(result)

    def repl(self, code: str, session: str | None, workspace: str | None, sample: Sampler | None,
             ticket: Ticket | None = None) -> dict[str, Any]:
        def open_ws() -> Workspace:
            return self.access.open(workspace)

        found = self.sessions.get(session, open_ws)
        if session and workspace and str(found.workspace.root) != str(open_ws().root):
            raise ValueError(f"session {session} is over {found.workspace.root}, not {workspace}")
        return self.sessions.run(found, code, sample, ticket)

    def shutdown(self) -> None:
        """Refuse new calls and stop those running (stdin closed): safe from any thread."""
        self.pools.shutdown()

    def close(self, polls: int = 50) -> bool:
        """After shutdown: wait (up to `polls` tenths of a second) for running calls to return,
        then close every sandbox. True when no call was left running."""
        self.pools.shutdown()
        drained = self.pools.drain(polls)
        self.reaper.stop()
        self.sessions.close()
        self.sandboxes.close()
        return drained


def progress_messages(report: Callable[[str], None]) -> ev.Observer:
    """An observer that turns the root run's events into progress messages."""
    def observe(event: ev.Event) -> None:
        if event.depth != 0:
            return
        if isinstance(event, ev.IterationStarted):
            report(f"iteration {event.iteration}")
        elif isinstance(event, ev.SubcallFinished):
            report(f"{event.call} finished")
        elif isinstance(event, ev.RunFinished):
            report("done")
    return observe
