"""A document's card: what names it — file name, title, and for filings the company, form and
fiscal period where the first pages state them. Search ranks documents by their cards, so a
question that names a document ("Contoso's 2023 10-K", "R Internals") finds its passages there.
Standard library only (the sandbox imports the search that reads these)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

FIRST_CHARS = 30_000  # the cover and the first pages: where filings say who, what and when

_FORM = re.compile(r"\bFORM\s+(10-K|10-Q|8-K|20-F|40-F|6-K|11-K|S-1|S-4|DEF\s*14A)\b", re.I)
_REGISTRANT = re.compile(
    r"^[ \t]*([^\n]{2,120}?)[ \t]*\n[ \t]*\(?[ \t]*exact name of (?:the )?registrant as specified in its charter", re.I | re.M)
_PERIOD = re.compile(
    r"(fiscal year|year|quarterly period|period|quarter)\s+ended:?\s+([A-Z][a-z]{2,8}\.?\s+\d{1,2},?\s+(\d{4}))", re.I)
_FY = re.compile(r"\b(?:fiscal(?:\s+year)?|FY)\s*'?((?:19|20)\d{2})\b", re.I)


def make_card(name: str, metadata: dict[str, Any], outline: Iterable[tuple[int, int, str]], first_pages: Iterable[str]) -> dict[str, str]:
    """Fields that name the document; only those found."""
    text = ""
    for page in first_pages:
        text += page + "\n"
        if len(text) >= FIRST_CHARS:
            break
    text = text[:FIRST_CHARS]
    card: dict[str, str] = {}
    entries = list(outline)
    # A cover's first lines name the document ("R Internals / Version 4.2.2"); a PDF's metadata
    # title is often empty or a tool's default; the outline's first entry is often "Preface".
    title = _cover(text) or str(metadata.get("title") or "").strip() or (entries[0][2] if entries else "")
    if title:
        card["title"] = " ".join(title.split())[:200]
    if form := _FORM.search(text):
        card["form"] = re.sub(r"\s+", " ", form.group(1).upper())
    if registrant := _REGISTRANT.search(text):
        company = " ".join(registrant.group(1).strip(" .,:|").split())
        if company and not company.lower().startswith(("(", "commission file")):
            card["company"] = company
    if not card.get("company") and metadata.get("author"):
        card["company"] = str(metadata["author"])[:120]
    if period := _PERIOD.search(text):
        card["period_end"] = " ".join(period.group(2).split())
        card["fiscal_year"] = period.group(3)
        if "quarter" in period.group(1).lower():
            card["period"] = "quarter"
    elif fy := _FY.search(text):
        card["fiscal_year"] = fy.group(1)
    if card.get("form") and card.get("company"):  # a filing's cover starts with the SEC's name, not its own
        when = f"period ended {card['period_end']}" if card.get("period_end") else card.get("fiscal_year", "")
        card["title"] = " ".join(f"{card['company']} — Form {card['form']} {when}".split())
    return card


def card_text(card: dict[str, str]) -> str:
    """The card as words for the documents index: 'fiscal 2023 FY2023' lets either phrasing match."""
    parts = [card.get("company", ""), card.get("form", ""), card.get("period_end", "")]
    if year := card.get("fiscal_year"):
        parts += [f"fiscal {year}", f"FY{year}"]
    if card.get("form") == "10-K":
        parts.append("annual report")
    elif card.get("form") == "10-Q":
        parts.append("quarterly report")
    return " ".join(p for p in parts if p)


def name_words(doc: str, name: str) -> str:
    """The file name as words: 'r-ints.pdf' -> 'r ints pdf'."""
    return " ".join(dict.fromkeys(re.findall(r"[^\W_]+", f"{doc} {name}")))


def _cover(text: str) -> str:
    """The first line with letters, and the next one too when both are short (a title and its
    subtitle or version)."""
    lines = [ln.strip(" #*=-\t") for ln in text.split("\n")[:40]]
    lines = [ln for ln in lines if len(ln) >= 2 and any(c.isalpha() for c in ln)]
    if not lines:
        return ""
    if len(lines) > 1 and len(lines[0]) <= 60 and len(lines[1]) <= 60 and not re.match(r"\d+(\.\d+)*\.?\s", lines[1]):
        return f"{lines[0]} — {lines[1]}"
    return lines[0][:200]
