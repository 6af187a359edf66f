"""What the MCP tools do, as plain blocking functions over workspaces (no MCP types here).

Each returns a JSON-ready dict or raises with one clear message; mcp_server.py runs them on worker
threads and turns failures into tool errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rlmcli.config import Settings
from rlmcli.engine import events as ev
from rlmcli.serve.access import Access, page_uri
from rlmcli.serve.sessions import Sampler, Sessions
from rlmcli.workspace.store import Workspace

GREP_HITS = 200


def cite(doc: str, page: int, line: int | None = None) -> str:
    return f"[{doc} p.{page}" + (f" l.{line}]" if line else "]")


class Tools:
    def __init__(self, settings: Settings, access: Access) -> None:
        self.settings = settings
        self.access = access
        self.sessions = Sessions(settings)

    def _docs_of(self, ws: Workspace, doc: str | None) -> None:
        if doc and not ws.reader.select(doc):
            raise ValueError(f"no document matches {doc!r}: see list_documents")

    def list_documents(self, workspace: str | None) -> dict[str, Any]:
        ws = self.access.open(workspace, need_documents=False)
        docs = []
        for doc, rec in ws.documents().items():
            card = rec.get("card") or {}
            docs.append({"doc": doc, "title": card.get("title") or rec.get("name", doc), "type": rec["type"],
                         "pages": rec["pages"], "tokens": rec["tokens"], "warnings": rec.get("warnings", [])})
        return {"workspace": str(ws.root), "documents": docs, "totals": ws.manifest()["totals"]}

    def search(self, query: str, workspace: str | None, doc: str | None, k: int) -> dict[str, Any]:
        from rlmcli.search import search_workspace

        if not query.strip():
            raise ValueError("empty query: give some words to search for")
        ws = self.access.open(workspace)
        self._docs_of(ws, doc)
        found = search_workspace(ws, query, k=k, doc=doc)
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

    def grep(self, pattern: str, workspace: str | None, doc: str | None, max_hits: int) -> dict[str, Any]:
        """Runs in a pooled sandbox: a pathological regex hits the cell's time limit, not the server."""
        from rlmcli.batch.work import give_back_sandbox, take_sandbox

        if not pattern:
            raise ValueError("empty pattern")
        ws = self.access.open(workspace)
        self._docs_of(ws, doc)
        code = (f"import json as _j\n_h = grep({pattern!r}, doc={doc!r}, max_hits={int(max_hits)})\n"
                "print(_j.dumps({'hits': [[h.doc, h.page, h.line, h.text[:500]] for h in _h], 'cut': _h.truncated}))")
        sandbox = take_sandbox(str(ws.root), self.settings)
        try:
            sandbox.reset()
            result = sandbox.run(code)
        finally:
            give_back_sandbox(str(ws.root), self.settings.sandbox, sandbox)
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
            observer: ev.Observer | None) -> dict[str, Any]:
        from rlmcli.ask import answer_record, run_question

        if not question.strip():
            raise ValueError("empty question")
        if files:
            ws, report = self._ingest(files, workspace)
            if not ws.exists() or not ws.documents():
                failed = "; ".join(f"{n}: {e}" for n, e in report.failed)
                raise ValueError(f"nothing to ask about: {failed or 'no input could be ingested'}")
        else:
            ws = self.access.open(workspace)
        return answer_record(run_question(self.settings, ws, question, observer))

    def repl(self, code: str, session: str | None, workspace: str | None, sample: Sampler | None) -> dict[str, Any]:
        def open_ws() -> Workspace:
            return self.access.open(workspace)

        found = self.sessions.get(session, open_ws)
        if session and workspace and str(found.workspace.root) != str(open_ws().root):
            raise ValueError(f"session {session} is over {found.workspace.root}, not {workspace}")
        return self.sessions.run(found, code, sample)

    def close(self) -> None:
        self.sessions.close()


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
