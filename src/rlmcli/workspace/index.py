"""SQLite FTS5 index over passages ("chunks") of pages, each with its doc, page and line.

Passages, not whole pages, are the unit of ranking: BM25 then rewards the paragraph that
answers a question instead of the page that mentions its words most often. Each passage
carries the heading it sits under, in its own column, so headings can be weighted.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

CHUNK_CHARS = 800
SCHEMA_VERSION = 1
_MD_HEADING = re.compile(r"^#{1,6}\s+(.+)")

# A document's passages are inserted together, so they hold one run of rowids (docs.first_row
# to last_row): searching one document is a rowid range the FTS index seeks to, not a scan.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS docs(doc TEXT PRIMARY KEY, sha256 TEXT NOT NULL, first_row INTEGER, last_row INTEGER);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(
    heading, body, doc UNINDEXED, page UNINDEXED, line UNINDEXED,
    tokenize = "porter unicode61 remove_diacritics 2"
);
CREATE VIRTUAL TABLE IF NOT EXISTS doc_cards USING fts5(
    name, title, info, doc UNINDEXED,
    tokenize = "porter unicode61 remove_diacritics 2"
);
CREATE TABLE IF NOT EXISTS cards(doc TEXT PRIMARY KEY, version INTEGER NOT NULL, card TEXT NOT NULL);
"""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    return conn


def add_card(conn: sqlite3.Connection, doc: str, name: str, card: dict[str, str]) -> None:
    """The document's card (replacing any earlier one): its fields for search to weigh, and its
    words in doc_cards for a query to find it among many. The caller owns the transaction."""
    import json

    from rlmcli.workspace.cards import CARD_VERSION, card_text, name_words

    conn.execute("DELETE FROM doc_cards WHERE doc = ?", (doc,))
    conn.execute("DELETE FROM cards WHERE doc = ?", (doc,))
    conn.execute("INSERT INTO doc_cards(name, title, info, doc) VALUES (?,?,?,?)",
                 (name_words(doc, name), card.get("title", ""), card_text(card), doc))
    conn.execute("INSERT OR REPLACE INTO cards(doc, version, card) VALUES (?,?,?)",
                 (doc, CARD_VERSION, json.dumps(card, ensure_ascii=False)))


def cards_missing(conn: sqlite3.Connection) -> list[str]:
    """Documents whose card is missing or was made by an older version of the card reader."""
    from rlmcli.workspace.cards import CARD_VERSION

    return [d for (d,) in conn.execute(
        "SELECT doc FROM docs WHERE doc NOT IN (SELECT doc FROM cards WHERE version = ?)", (CARD_VERSION,))]


def chunk_page(text: str, heading: str, titles: Iterable[str] = ()) -> Iterator[tuple[str, int, str]]:
    """(heading, first line number, passage) for one page; paragraphs merged up to CHUNK_CHARS.

    A passage starts at each Markdown heading and at each line that ends with one of `titles`
    (the outline entries that start on this page: PDF bookmarks name the FAQ entry or section).
    """
    lines = text.split("\n")
    wanted = [t for t in titles if len(t) >= 4]
    buf: list[str] = []
    size = 0
    start = 1
    for number, line in enumerate(lines, start=1):
        m = _MD_HEADING.match(line)
        stripped = line.strip()
        title = next((t for t in wanted if stripped.endswith(t) and len(stripped) <= len(t) + 12), None)
        if m or title:
            if buf:
                yield heading, start, "\n".join(buf)
                buf, size = [], 0
            heading = m.group(1).strip() if m else title  # type: ignore[assignment]
        blank = not line.strip()
        if blank and size >= CHUNK_CHARS // 2 or size + len(line) > CHUNK_CHARS and buf:
            if buf:
                yield heading, start, "\n".join(buf)
            buf, size = [], 0
        if blank and not buf:
            continue
        if not buf:
            start = number
        buf.append(line)
        size += len(line) + 1
    if buf:
        yield heading, start, "\n".join(buf)


def page_headings_iter(total: int, outline: Iterable[tuple[int, str]]) -> Iterator[tuple[str, list[str]]]:
    """For each page: the outline heading in force at its top, and the titles that start on it."""
    starting: dict[int, list[str]] = {}
    for page, title in outline:
        starting.setdefault(page, []).append(title)
    current = ""
    for number in range(1, total + 1):
        titles = starting.get(number, [])
        yield current, titles
        if titles:
            current = titles[-1]


def add_document(
    conn: sqlite3.Connection, doc: str, sha256: str, pages: Iterable[str], headings: Iterable[tuple[str, list[str]]]
) -> None:
    """Replace `doc`'s rows. The caller owns the transaction."""
    if conn.execute("SELECT 1 FROM docs WHERE doc = ?", (doc,)).fetchone():
        remove_document(conn, doc)  # a scan of the FTS table: only when replacing
    rows = (
        (heading, body, doc, number, line)
        for number, (page, (first_heading, titles)) in enumerate(zip(pages, headings, strict=True), start=1)
        for heading, line, body in chunk_page(page, first_heading, titles)
    )
    before = _last_row(conn)
    conn.executemany("INSERT INTO chunks(heading, body, doc, page, line) VALUES (?,?,?,?,?)", rows)
    after = _last_row(conn)
    first, last = (before + 1, after) if after > before else (None, None)
    conn.execute("INSERT OR REPLACE INTO docs(doc, sha256, first_row, last_row) VALUES (?, ?, ?, ?)", (doc, sha256, first, last))


def _last_row(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT rowid FROM chunks ORDER BY rowid DESC LIMIT 1").fetchone()
    return int(row[0]) if row else 0


def remove_document(conn: sqlite3.Connection, doc: str) -> None:
    span = conn.execute("SELECT first_row, last_row FROM docs WHERE doc = ?", (doc,)).fetchone()
    if span and span[0] is not None:
        conn.execute("DELETE FROM chunks WHERE rowid BETWEEN ? AND ?", span)  # its run of rows
    else:
        conn.execute("DELETE FROM chunks WHERE doc = ?", (doc,))
    conn.execute("DELETE FROM doc_cards WHERE doc = ?", (doc,))
    conn.execute("DELETE FROM cards WHERE doc = ?", (doc,))
    conn.execute("DELETE FROM docs WHERE doc = ?", (doc,))

