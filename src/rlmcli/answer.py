"""Citations in answers: find `[doc p.N]` references, resolve them to pages, verify quotes.

A citation is verified when its page exists and every quotation ("…" or “…”) in the sentence
that carries it occurs on that page (whitespace and case ignored). Unresolvable or unverified
citations are marked in the Sources list, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from rlmcli.workspace.store import Workspace

_CITE = re.compile(r"\[([^\[\]]+?)(?:,\s*|\s+)(?:p|pp|page|pages)\.?\s*(\d+)(?:\s*[-–]\s*(\d+))?(?:\s+l\.\s*(\d+)(?:-(\d+))?)?\]", re.I)
_QUOTE = re.compile(r"[\"“]([^\"“”]{4,300})[\"”]")


@dataclass
class Citation:
    text: str  # as written in the answer
    doc: str | None  # resolved doc id
    page: int
    line: int | None
    status: str  # verified | unverified | unresolved
    note: str = ""
    quote: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("-\n", "").split())


def _claim_before(answer: str, start: int, previous_end: int) -> str:
    """The text a citation supports: back to the previous citation or the start of its sentence."""
    left = max(answer.rfind(". ", 0, start), answer.rfind("\n", 0, start), answer.rfind("; ", 0, start), previous_end - 1)
    return answer[left + 1:start]


def check_citations(answer: str, ws: Workspace) -> list[Citation]:
    out: list[Citation] = []
    previous_end = 0
    for m in _CITE.finditer(answer):
        claim = _claim_before(answer, m.start(), previous_end)
        previous_end = m.end()
        raw_doc, first = m.group(1).strip(), int(m.group(2))
        last = int(m.group(3)) if m.group(3) else first
        line = int(m.group(4)) if m.group(4) else None
        try:
            doc = ws.resolve_doc(raw_doc)
        except Exception:  # noqa: BLE001 - the model named a document we do not have
            out.append(Citation(m.group(0), None, first, line, "unresolved", f"no document {raw_doc!r}"))
            continue
        pages = ws.documents()[doc]["pages"]
        if not 1 <= first <= pages:
            out.append(Citation(m.group(0), doc, first, line, "unresolved", f"{doc} has {pages} pages"))
            continue
        text = "\n".join(ws.read_page(doc, p) for p in range(first, min(last, pages) + 1))
        quotes = _QUOTE.findall(claim)
        status, note, quote = "verified", "", None
        for q in quotes:
            if _norm(q) not in _norm(text):
                status, note, quote = "unverified", "quoted text not found on this page", q
                break
            quote = q
        if line is None:
            anchor = quote or ""
            line = next((i for i, row in enumerate(text.splitlines(), 1) if anchor and _norm(anchor)[:30] in _norm(row)), 1)
        out.append(Citation(m.group(0), doc, first, line, status, note, quote))
    return out


def sources_text(citations: list[Citation], ws: Workspace) -> str:
    """The Sources list printed under an answer: each distinct place once."""
    if not citations:
        return ""
    lines = ["Sources:"]
    shown_places: set[tuple[Any, ...]] = set()
    for c in citations:
        place = (c.doc, c.page, c.line, c.status, c.quote, c.text if c.status == "unresolved" else None)
        if place in shown_places:
            continue
        shown_places.add(place)
        if c.status == "unresolved":
            lines.append(f"  ✗ {c.text}: {c.note}")
            continue
        assert c.doc is not None
        page_lines = ws.read_page(c.doc, c.page).splitlines()
        shown = page_lines[(c.line or 1) - 1].strip() if page_lines and (c.line or 1) <= len(page_lines) else ""
        mark = "✓" if c.status == "verified" else "?"
        note = f"  ({c.note}: \"{c.quote}\")" if c.status == "unverified" else ""
        lines.append(f"  {mark} {c.doc} p.{c.page} l.{c.line}: {shown[:100]}{note}")
    return "\n".join(lines)
