"""Search a workspace from the parent process (for `rlm search` and `rlm ask --offline`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlmcli.workspace.store import Workspace


@contextlib.contextmanager
def _inside(root: Path) -> Iterator[None]:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)


def search_workspace(ws: Workspace, query: str, k: int = 10, doc: str | None = None) -> list[dict[str, Any]]:
    """The helpers' `search()`, as plain dicts: doc, page (1-based), line, score, heading, text."""
    from rlmcli.sandbox.helpers import Toolkit

    with _inside(ws.root):
        kit = Toolkit(channel=None, namespace={})  # type: ignore[arg-type] - no model calls here
        passages = kit.search(query, k=k, doc=doc)
    return [{"doc": p.doc, "page": p.page, "line": p.line, "score": round(p.score, 4), "heading": p.heading,
             "text": p.text} for p in passages]


def passages_text(passages: list[dict[str, Any]]) -> str:
    if not passages:
        return "(no passages found)"
    return "\n\n".join(f"[{p['doc']} p.{p['page']} l.{p['line']}] score={p['score']:.2f}"
                       + (f" ({p['heading']})" if p["heading"] else "") + f"\n{p['text']}" for p in passages)
