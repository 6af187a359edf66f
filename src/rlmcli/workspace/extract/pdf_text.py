"""One PDF page's text from PDFium: its plain text, rows of cells, or lines rebuilt from character boxes.

PDFium's plain text reads like `pdftotext` on nearly every page of real filings, and costs
nothing beyond parsing the page, so it is the base. Two things are added:

* **cells**: on a page with three or more rows of figures, the spaces of those rows where a cell
  can start (before or after a figure, before a capital) are measured, two character boxes per
  space, never one call per character; a gap wider than the line's height becomes ` | `. A row
  PDFium broke before its figures is joined, and one it ran into the next row is split. Only
  spaces change, never words, so a page with cells cannot read worse than the plain one.
* **layout**: EDGAR converters draw some pages one character at a time, and PDFium then breaks
  the line after every character (`T\r\na\r\nb...`), glues words (`JoeHouseholderDirector`) or
  spaces out tracked headings (`S U B S I D I A R Y`). When the plain text shows one of these,
  every character's box is read, lines are grouped by height, words are split at gaps, and the
  result is kept only when it reads better than the plain text.

A rebuild by text rectangles (one `get_text_bounded` per rectangle) once made many filing pages
letter-spaced and ingest ten times slower than `pdftotext`; `PageText.calls` counts the box reads
so a test holds that cost per page.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from typing import Any

WORD_GAP = 0.1  # a gap wider than this share of the line height starts a word
CELL_GAP = 1.0  # ... and wider than the line height, a table cell
TRACKED_GAP = (0.08, 0.2)  # letters of a tracked heading stand this far apart; wider is a space

# A figure of a table row: `1,488`, `(370)`, `12.5%`, `$`, `—`.
_FIGURE = re.compile(r"(?:^|(?<= ))(?:\(?[$€£¥]?\d[\d,.]*\)?%?|[$€£¥]|—)(?= |$)")
_FIGURE_START = frozenset("0123456789($€£¥—")
_FIGURE_END = frozenset("0123456789)%$€£¥—")
_CELL_START = _FIGURE_START | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SPACES = re.compile(r" +")
_LETTER_RUN = re.compile(r"(?<!\S)(?:\w ){3,}\w(?!\S)")  # `S U B S`: four or more one-letter tokens
_GLUED = re.compile(r"[a-z][A-Z][a-z]+[A-Z]|[a-z]\d\d")  # `JoeHouseholderDirector`, `January26`
_SHORT_LINE = re.compile(r"^ *\S{1,2} *\r?$", re.M)
_CURRENCY_CELL = re.compile(r"(^|\| )([$€£¥]) \| ")
_TRAILING_CURRENCY = re.compile(r"(?<=[^|\s]) ([$€£¥]) \| ")
_PERCENT_CELL = re.compile(r" \| %(?= \||$)")


@dataclass
class PageText:
    text: str
    mode: str  # plain | cells | layout
    calls: int  # character boxes read from PDFium
    spaced: float  # share of the words standing in letter-spaced runs (`T a b l e`)


class _Boxes:
    """Loose character boxes (left, bottom, right, top), one PDFium call each, counted."""

    def __init__(self, textpage: Any) -> None:
        import pypdfium2.raw as raw

        self._page = textpage
        self._rect = raw.FS_RECTF()
        self._ref = ctypes.byref(self._rect)
        self._get = raw.FPDFText_GetLooseCharBox
        self.calls = 0

    def __call__(self, index: int) -> tuple[float, float, float, float]:
        self.calls += 1
        self._get(self._page, index, self._ref)
        r = self._rect
        return r.left, r.bottom, r.right, r.top


def page_text(textpage: Any) -> PageText:
    """The text of a page from its PDFium text page (a raw FPDF_TEXTPAGE handle)."""
    import pypdfium2.raw as raw

    count = raw.FPDFText_CountChars(textpage)
    if count <= 0:
        return PageText("", "plain", 0, 0.0)
    buffer = (ctypes.c_ushort * (2 * count + 1))()  # a character past UTF-16's first plane takes two
    units = raw.FPDFText_GetText(textpage, 0, count, buffer)
    text = bytes(buffer)[:2 * max(units - 1, 0)].decode("utf-16-le", errors="replace")
    if len(text) != count:  # such characters shift the indexes: no boxes, the text as it is
        return _finished(_plain(text), "plain", 0)
    boxes = _Boxes(textpage)
    if looks_broken(text):
        laid = _layout(text, boxes)
        if badness(laid) < badness(text):
            return _finished(laid, "layout", boxes.calls)
    cells = _cells(text, boxes)
    if cells is not None:
        return _finished(cells, "cells", boxes.calls)
    return _finished(_plain(text), "plain", boxes.calls)


def _finished(text: str, mode: str, calls: int) -> PageText:
    return PageText(text, mode, calls, letter_spaced_share(text))


def _plain(text: str) -> str:
    # PDFium marks hyphens it considers soft with \x02; pdftotext prints them as '-'.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x02", "-").replace("\ufffe", "-")


# ---- what a page's plain text says about itself ----------------------------------------------

def looks_broken(text: str) -> bool:
    """One-character lines (PDFium broke the line after each character) or letter-spaced runs."""
    short = len(_SHORT_LINE.findall(text))
    return (short >= 5 and short > 0.3 * (text.count("\n") + 1)) or bool(_LETTER_RUN.search(text))


def badness(text: str) -> int:
    """How broken a page's text reads: one-character lines, letter-spaced runs, glued words."""
    return len(_SHORT_LINE.findall(text)) + 3 * len(_LETTER_RUN.findall(text)) + len(_GLUED.findall(text))


def letter_spaced_share(text: str) -> float:
    """Share of a page's words that stand in runs of one-letter tokens (`T a b l e`)."""
    if not _LETTER_RUN.search(text):
        return 0.0
    spaced = sum(len(m.group().split()) for m in _LETTER_RUN.finditer(text))
    return spaced / len(text.split())


# ---- cells: the plain text with the gaps before its figures measured ---------------------------

def _cells(text: str, box: _Boxes) -> str | None:
    """The page with ` | ` between the cells of its table rows, or None when it has no table
    (fewer than three lines holding two figures or more). On a table row only the spaces where a
    cell can start are measured (before or after a figure, before a capital), and the line break
    before a row's figures: a few box reads per row, never one per character."""
    lines = text.split("\r\n")
    figures = [len(_FIGURE.findall(line)) for line in lines]
    if sum(count >= 2 for count in figures) < 3:
        return None
    out: list[str] = []
    position = 0
    for number, line in enumerate(lines):
        last = 0
        if figures[number] >= 2:
            for match in _SPACES.finditer(line):
                start, end = match.span()
                if start == 0 or end == len(line) or not (line[start - 1] in _FIGURE_END or line[end] in _CELL_START):
                    continue
                gap, same_row = _gap(box, position + start - 1, position + end)
                # PDFium sometimes runs two rows into one line: the next row starts lower down
                out += [line[last:start], "\n" if not same_row else " | " if gap > CELL_GAP else " "]
                last = end
        out.append(line[last:])
        end = position + len(line)
        if (number + 1 < len(lines) and figures[number + 1] >= 2 and line.strip() and line[-1] != " "
                and lines[number + 1][:1] in _FIGURE_START):
            gap, same_row = _gap(box, end - 1, end + 2)
            if same_row:  # PDFium broke a row before its figures
                out.append(" | " if gap > CELL_GAP else " ")
                position = end + 2
                continue
        out.append("\n")
        position = end + 2
    return "\n".join(_tidy_row(line) for line in _plain("".join(out)).split("\n"))


def _gap(box: _Boxes, left: int, right: int) -> tuple[float, bool]:
    """The gap between two characters in line heights, and whether they stand on one line."""
    a, b = box(left), box(right)
    low = min(a[3] - a[1], b[3] - b[1])
    height = max(a[3] - a[1], b[3] - b[1], 1e-3)
    return (b[0] - a[2]) / height, min(a[3], b[3]) - max(a[1], b[1]) > 0.5 * low and b[0] > a[2] - 0.5 * height


def _tidy_row(line: str) -> str:
    """`$ | 5,363` reads as one cell, `12.5 | %` too; a `$` left at the end of a cell opens the next."""
    if " | " not in line:
        return line
    line = _TRAILING_CURRENCY.sub(r" | \1 ", _CURRENCY_CELL.sub(r"\1\2 ", line))
    return _PERCENT_CELL.sub("%", line)


# ---- layout: lines and words from every character's box --------------------------------------

Char = tuple[float, float, float, float, str, int]  # left, bottom, right, top, character, index


def _layout(text: str, box: _Boxes) -> str:
    chars: list[Char] = []
    for index, ch in enumerate(text):
        if ch.isspace():
            continue
        left, bottom, right, top = box(index)
        if right > left or top > bottom:
            chars.append((left, bottom, right, top, "-" if ch in "\x02\ufffe" else ch, index))
    return "\n".join(_line_text(text, line) for line in _rows(chars)) + "\n"


def _rows(chars: list[Char]) -> list[list[Char]]:
    """Characters grouped into lines, top to bottom: a character joins the line above when their
    heights overlap by half of the smaller (superscripts stay on their line)."""
    chars.sort(key=lambda c: -(c[1] + c[3]))
    rows: list[tuple[float, float, list[Char]]] = []
    for c in chars:
        if rows:
            bottom, top, members = rows[-1]
            if min(c[3], top) - max(c[1], bottom) > 0.5 * min(c[3] - c[1], top - bottom):
                members.append(c)
                rows[-1] = (min(bottom, c[1]), max(top, c[3]), members)
                continue
        rows.append((c[1], c[3], [c]))
    return [sorted(members, key=lambda c: c[0]) for _, _, members in rows]


def _line_text(text: str, line: list[Char]) -> str:
    heights = sorted(c[3] - c[1] for c in line)
    height = heights[len(heights) // 2] or 1.0
    kept: list[Char] = []
    for c in line:  # the same letter drawn twice, a hair apart, is one letter in bold
        if kept and c[4] == kept[-1][4] and abs(c[0] - kept[-1][0]) < 0.5 * max(kept[-1][2] - kept[-1][0], 0.01):
            continue
        kept.append(c)
    gaps = [(b[0] - a[2]) / height for a, b in zip(kept, kept[1:], strict=False)]
    inner = sorted(g for g in gaps if g <= CELL_GAP)
    tracked = len(inner) >= 4 and TRACKED_GAP[0] < inner[len(inner) // 5] < TRACKED_GAP[1]  # even small gaps are wide
    word_gap = max(WORD_GAP, 1.6 * inner[len(inner) // 5]) if tracked else WORD_GAP
    parts = [kept[0][4]] if kept else []
    for gap, a, b in zip(gaps, kept, kept[1:], strict=False):
        spaced = not tracked and a[5] < b[5] and text.find(" ", a[5] + 1, b[5]) >= 0  # PDFium saw a space
        if gap > CELL_GAP:
            parts.append(" | ")
        elif gap > word_gap or spaced:
            parts.append(" ")
        parts.append(b[4])
    return _tidy_row("".join(parts))
