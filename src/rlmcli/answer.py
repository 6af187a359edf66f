"""Citations in answers: find `[doc p.N]` references, resolve them to pages, verify quotes.

A citation is verified when its page exists and every quotation ("…" or “…”) in the sentence
that carries it occurs on that page (whitespace and case ignored). Unresolvable or unverified
citations are marked in the Sources list, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from rlmcli.workspace.store import Workspace

_CITE = re.compile(r"\[([^\[\]]+?)(?:,\s*|\s+)(?:p|pp|page|pages)\.?\s*(\d+)(?:\s*[-–]\s*(\d+))?(?:\s+l\.\s*(\d+)(?:-(\d+))?)?\]", re.I)
_CODE_CITE = re.compile(r"\[([^\[\]\s:]+\.[A-Za-z0-9]{1,8}):(\d+)(?:-\d+)?\]")
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
    ocr: bool = False  # the page's text came from OCR
    file_line: int | None = None  # for [path:line]: the line of the file
    last: int | None = field(default=None, repr=False)  # the last page of a [doc p.3-5] range
    field_name: str | None = None  # the answer field it supports (structured answers: schema.py)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("last")
        name = data.pop("field_name")
        if name is not None:
            data["field"] = name
        return data


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("-\n", "").split())


def _claim_before(answer: str, start: int, previous_end: int) -> str:
    """The text a citation supports: back to the previous citation or the start of its sentence."""
    left = max(answer.rfind(". ", 0, start), answer.rfind("\n", 0, start), answer.rfind("; ", 0, start), previous_end - 1)
    return answer[left + 1:start]


def check_citations(answer: str, ws: Workspace) -> list[Citation]:
    """Every `[doc p.N]` and `[path:line]` in the answer, resolved and checked, in order."""
    found = [(m.start(), m.end(), m, False) for m in _CITE.finditer(answer)]
    found += [(m.start(), m.end(), m, True) for m in _CODE_CITE.finditer(answer)]
    out: list[Citation] = []
    previous_end = 0
    for start, end, m, code in sorted(found, key=lambda f: f[0]):
        claim = _claim_before(answer, start, previous_end)
        previous_end = end
        citation = _code_citation(m, ws) if code else _page_citation(m, ws)
        if citation is None:
            continue
        if citation.status == "unresolved" or citation.doc is None:
            out.append(citation)
            continue
        pages = ws.documents()[citation.doc]["pages"]
        last = min(citation.last or citation.page, pages)
        text = "\n".join(ws.read_page(citation.doc, p) for p in range(citation.page, last + 1))
        for q in _QUOTE.findall(claim):
            if _norm(q) not in _norm(text):
                citation.status, citation.note, citation.quote = "unverified", "quoted text not found on this page", q
                break
            citation.quote = q
        if citation.line is None:
            anchor = citation.quote or ""
            citation.line = next((i for i, row in enumerate(text.splitlines(), 1)
                                  if anchor and _norm(anchor)[:30] in _norm(row)), 1)
        citation.ocr = citation.page in (ws.documents()[citation.doc].get("ocr_pages") or ())
        out.append(citation)
    return out


def _page_citation(m: re.Match[str], ws: Workspace) -> Citation | None:
    raw_doc, first = m.group(1).strip(), int(m.group(2))
    last = int(m.group(3)) if m.group(3) else first
    line = int(m.group(4)) if m.group(4) else None
    try:
        doc = ws.resolve_doc(raw_doc)
    except Exception:  # noqa: BLE001 - the model named a document we do not have
        return Citation(m.group(0), None, first, line, "unresolved", f"no document {raw_doc!r}")
    pages = ws.documents()[doc]["pages"]
    if not 1 <= first <= pages:
        return Citation(m.group(0), doc, first, line, "unresolved", f"{doc} has {pages} pages")
    return Citation(m.group(0), doc, first, line, "verified", last=last)


def _code_citation(m: re.Match[str], ws: Workspace) -> Citation | None:
    """`[src/main.py:42]`: a line of a code file; anything else in that shape is not a citation."""
    raw_doc, line = m.group(1).strip(), int(m.group(2))
    try:
        doc = ws.resolve_doc(raw_doc)
    except Exception:  # noqa: BLE001
        return None if "." not in raw_doc else Citation(m.group(0), None, 1, line, "unresolved",
                                                         f"no document {raw_doc!r}")
    try:
        page, on_page = ws.reader.locate(doc, line)
    except Exception as exc:  # noqa: BLE001 - not a line-numbered file, or past its end
        return Citation(m.group(0), doc, 1, line, "unresolved", str(exc))
    if page > ws.documents()[doc]["pages"]:
        return Citation(m.group(0), doc, page, line, "unresolved", f"{doc} has no line {line}")
    return Citation(m.group(0), doc, page, on_page, "verified", file_line=line)


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
        ocr = ", OCR" if c.ocr else ""
        where = f"{ws.documents()[c.doc].get('name') or c.doc}:{c.file_line}" if c.file_line else f"{c.doc} p.{c.page}{ocr} l.{c.line}"
        lines.append(f"  {mark} {where}: {shown[:100]}{note}")
    return "\n".join(lines)
