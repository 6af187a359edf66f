"""Search a workspace from the parent process (for `rlm search` and `rlm ask --offline`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlmcli.workspace.store import Workspace


def search_workspace(ws: Workspace, query: str, k: int = 10, doc: str | list[str] | None = None,
                     stop: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
    """The helpers' `search()`, as plain dicts: doc, page (1-based), line, score, heading, text.
    `stop` ends the search early (SearchStopped) when it returns True."""
    from rlmcli.workspace.query import Searcher

    searcher = Searcher(ws.reader, stop=stop)
    try:
        return [p.to_dict() for p in searcher.search(query, k=k, doc=doc)]
    finally:
        searcher.close()


def rank_documents(ws: Workspace, query: str, k: int = 10) -> list[dict[str, Any]]:
    """The helpers' `docs(query)`, as plain dicts: doc, score, title, card."""
    from rlmcli.workspace.query import Searcher

    searcher = Searcher(ws.reader)
    try:
        return [d.to_dict() for d in searcher.docs(query, k=k)]
    finally:
        searcher.close()


def documents_text(docs: list[dict[str, Any]]) -> str:
    if not docs:
        return "(no documents match)"
    return "\n".join(f"{d['doc']}\tscore={d['score']:.3g}\t" + " · ".join(x for x in (d["title"], d["card"]) if x) for d in docs)


def passages_text(passages: list[dict[str, Any]]) -> str:
    if not passages:
        return "(no passages found)"
    return "\n\n".join(f"[{p['doc']} p.{p['page']} l.{p['line']}] score={p['score']:.3g}"
                       + (f" ({p['heading']})" if p["heading"] else "") + f"\n{p['text']}" for p in passages)
