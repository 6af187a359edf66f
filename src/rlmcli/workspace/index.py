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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS docs(doc TEXT PRIMARY KEY, sha256 TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(
    heading, body, doc UNINDEXED, page UNINDEXED, line UNINDEXED,
    tokenize = "porter unicode61 remove_diacritics 2"
);
"""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    return conn


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


def page_headings(pages: list[str], outline: Iterable[tuple[int, str]]) -> list[tuple[str, list[str]]]:
    """For each page: the outline heading in force at its top, and the titles that start on it."""
    return list(page_headings_iter(len(pages), outline))


def page_headings_iter(total: int, outline: Iterable[tuple[int, str]]) -> Iterator[tuple[str, list[str]]]:
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
    conn.executemany("INSERT INTO chunks(heading, body, doc, page, line) VALUES (?,?,?,?,?)", rows)
    conn.execute("INSERT OR REPLACE INTO docs VALUES (?, ?)", (doc, sha256))


def remove_document(conn: sqlite3.Connection, doc: str) -> None:
    conn.execute("DELETE FROM chunks WHERE doc = ?", (doc,))
    conn.execute("DELETE FROM docs WHERE doc = ?", (doc,))


def indexed_docs(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT doc, sha256 FROM docs"))
