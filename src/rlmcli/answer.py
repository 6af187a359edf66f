"""Citations in answers: find `[doc p.N]` and `[path:line]` references, resolve them, check quotes.

Each citation gets one of three states, and the marks say no more than was checked:

* verified (✓): the page (or line) exists and every quotation ("…" or “…”) in the sentence that
  holds the citation, before or after it, occurs on that page (case, whitespace, curly quotes
  and dashes ignored);
* unchecked (○, "cited, not checked"): the page or line exists, but the sentence quotes nothing,
  so the claim itself was not checked;
* failed (✗): no such document, page or line, or a quotation is not on that page.

Failed citations are listed in the Sources, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from rlmcli.records import CitationState
from rlmcli.workspace.store import Workspace

VERIFIED, UNCHECKED, FAILED = CitationState.VERIFIED, CitationState.UNCHECKED, CitationState.FAILED
LEGEND = {VERIFIED: "quote found on the page", UNCHECKED: "cited, not checked (no quotation)", FAILED: "failed"}

_CITE = re.compile(r"\[([^\[\]]+?)(?:,\s*|\s+)(?:p|pp|page|pages)\.?\s*(\d+)(?:\s*[-–]\s*(\d+))?(?:\s+l\.\s*(\d+)(?:-(\d+))?)?\]", re.I)
_CODE_CITE = re.compile(r"\[([^\[\]\s:]+\.[A-Za-z0-9]{1,8}):(\d+)(?:-\d+)?\]")
_QUOTE = re.compile(r"[\"“]([^\"“”]{4,300})[\"”]")
_BOUNDARY = re.compile(r"[.!?;](?=\s)|\n")  # where a sentence ends (outside quotations)
_FOLD = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})


@dataclass
class Citation:
    text: str  # as written in the answer
    doc: str | None  # resolved doc id
    page: int
    line: int | None  # the line on the page: given, or where the quote was found
    status: CitationState
    note: str = ""  # why it failed, or what was checked
    quote: str | None = None  # the quotation checked (the one that failed, for a failure)
    ocr: bool = False  # the page's text came from OCR
    file_line: int | None = None  # for [path:line]: the line of the file
    last: int | None = field(default=None, repr=False)  # the last page of a [doc p.3-5] range
    field_name: str | None = None  # the answer field it supports (structured answers: schema.py)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data.pop("last")
        name = data.pop("field_name")
        if name is not None:
            data["field"] = name
        return data


def _norm(text: str) -> str:
    return " ".join(text.translate(_FOLD).lower().replace("-\n", "").split())


def _quotes_by_citation(answer: str, spans: list[tuple[int, int]]) -> list[list[str]]:
    """For each citation span, the quotations its sentence holds: those between the previous
    citation of the sentence (or its start) and this one, and for the sentence's last citation
    also those after it."""
    quotes = [(m.start(), m.end(), m.group(1)) for m in _QUOTE.finditer(answer)]
    inside = [(s, e) for s, e, _ in quotes] + spans  # "p. 4" or a quoted "Fees. Payment" ends no sentence
    ends = [m.start() for m in _BOUNDARY.finditer(answer) if not any(s < m.start() < e for s, e in inside)]

    def sentence(pos: int) -> tuple[int, int]:
        before = [b for b in ends if b < pos]
        after = [b for b in ends if b >= pos]
        return (before[-1] + 1 if before else 0), (after[0] if after else len(answer))

    out: list[list[str]] = []
    for i, (start, end) in enumerate(spans):
        first, last = sentence(start)
        left = max(first, spans[i - 1][1]) if i else first
        following = spans[i + 1][0] if i + 1 < len(spans) and spans[i + 1][0] < last else None
        right = last if following is None else start  # quotes after it belong to the sentence's last citation
        out.append([q for s, e, q in quotes if (left <= s and e <= start) or (end <= s and e <= right)])
    return out


def check_citations(answer: str, ws: Workspace) -> list[Citation]:
    """Every `[doc p.N]` and `[path:line]` in the answer, resolved and checked, in order."""
    found = [(m.start(), m.end(), m, False) for m in _CITE.finditer(answer)]
    found += [(m.start(), m.end(), m, True) for m in _CODE_CITE.finditer(answer)]
    found.sort(key=lambda f: f[0])
    quotes = _quotes_by_citation(answer, [(s, e) for s, e, _, _ in found])
    out: list[Citation] = []
    for (_, _, m, code), claimed in zip(found, quotes, strict=True):
        citation = _code_citation(m, ws) if code else _page_citation(m, ws)
        if citation is None:
            continue
        if citation.status != FAILED and citation.doc is not None:
            _check_quotes(citation, claimed, ws)
        out.append(citation)
    return out


def _check_quotes(citation: Citation, quotes: list[str], ws: Workspace) -> None:
    assert citation.doc is not None
    record = ws.documents()[citation.doc]
    last = min(citation.last or citation.page, record.pages)
    text = "\n".join(ws.read_page(citation.doc, p) for p in range(citation.page, last + 1))
    citation.ocr = citation.page in record.ocr_pages
    if not quotes:
        citation.status, citation.note = UNCHECKED, "cited, not checked: the sentence quotes nothing"
        return
    page_text = _norm(text)
    for q in quotes:
        if _norm(q) not in page_text:
            where = "these pages" if last > citation.page else "this page"
            citation.status, citation.note, citation.quote = FAILED, f"quoted text not on {where}", q
            return
    citation.status, citation.quote = VERIFIED, quotes[0]
    citation.note = "quote found on the page" if len(quotes) == 1 else f"{len(quotes)} quotes found on the page"
    if citation.line is None:
        anchor = _norm(quotes[0])[:30]
        citation.line = next((i for i, row in enumerate(text.splitlines(), 1) if anchor in _norm(row)), None)


def _page_citation(m: re.Match[str], ws: Workspace) -> Citation | None:
    raw_doc, first = m.group(1).strip(), int(m.group(2))
    last = int(m.group(3)) if m.group(3) else first
    line = int(m.group(4)) if m.group(4) else None
    try:
        doc = ws.resolve_doc(raw_doc)
    except Exception:  # noqa: BLE001 - the model named a document we do not have
        return Citation(m.group(0), None, first, line, FAILED, f"no document {raw_doc!r}")
    pages = ws.documents()[doc].pages
    if not 1 <= first <= pages or last < first:
        return Citation(m.group(0), doc, first, line, FAILED, f"{doc} has {pages} pages")
    if line is not None:
        rows = len(ws.read_page(doc, first).splitlines())
        if not 1 <= line <= rows:
            return Citation(m.group(0), doc, first, line, FAILED, f"{doc} p.{first} has {rows} lines")
    return Citation(m.group(0), doc, first, line, UNCHECKED, last=last)


def _code_citation(m: re.Match[str], ws: Workspace) -> Citation | None:
    """`[src/main.py:42]`: a line of a code file; anything else in that shape is not a citation."""
    raw_doc, line = m.group(1).strip(), int(m.group(2))
    try:
        doc = ws.resolve_doc(raw_doc)
    except Exception:  # noqa: BLE001
        return None if "." not in raw_doc else Citation(m.group(0), None, 1, line, FAILED, f"no document {raw_doc!r}")
    try:
        page, on_page = ws.reader.locate(doc, line)
    except Exception as exc:  # noqa: BLE001 - not a line-numbered file, or before its start
        return Citation(m.group(0), doc, 1, line, FAILED, str(exc))
    pages = ws.documents()[doc].pages
    if page > pages or on_page > len(ws.read_page(doc, page).splitlines()):
        total = sum(len(ws.read_page(doc, p).splitlines()) for p in range(1, pages + 1))
        return Citation(m.group(0), doc, min(page, pages), line, FAILED, f"{doc} has {total:,} lines, not {line:,}",
                        file_line=line)
    return Citation(m.group(0), doc, page, on_page, UNCHECKED, file_line=line)


def sources_text(citations: list[Citation], ws: Workspace) -> str:
    """The Sources list printed under an answer: each distinct place once, then what the marks mean."""
    if not citations:
        return ""
    lines = ["Sources:"]
    shown_places: set[tuple[Any, ...]] = set()
    for c in citations:
        place = (c.doc, c.page, c.line, c.status, c.quote, c.text if c.doc is None or c.status == FAILED else None)
        if place in shown_places:
            continue
        shown_places.add(place)
        mark = c.status.mark
        if c.doc is None or (c.status == FAILED and c.quote is None):
            lines.append(f"  {mark} {c.text}: {c.note}")
            continue
        ocr = ", OCR" if c.ocr else ""
        name = ws.documents()[c.doc].name or c.doc
        where = f"{name}:{c.file_line}" if c.file_line else f"{c.doc} p.{c.page}{ocr}" + (f" l.{c.line}" if c.line else "")
        if c.status == FAILED:
            lines.append(f"  {mark} {where}: {c.note}: \"{c.quote}\"")
            continue
        page_lines = ws.read_page(c.doc, c.page).splitlines()
        shown = page_lines[c.line - 1].strip()[:100] if c.line and c.line <= len(page_lines) else ""
        if c.status == UNCHECKED:
            lines.append(f"  {mark} {where}: cited, not checked" + (f": {shown}" if shown else ""))
        else:
            lines.append(f"  {mark} {where}: {shown}")
    states = [s for s in (VERIFIED, UNCHECKED, FAILED) if any(c.status == s for c in citations)]
    lines.append("  (" + " · ".join(f"{s.mark} {LEGEND[s]}" for s in states) + ")")
    return "\n".join(lines)
