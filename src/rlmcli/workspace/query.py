"""Ranked full-text search over a workspace's index. Standard library only: the sandbox's
`search()` helper and the parent's `rlm search` run this same code."""

from __future__ import annotations

import os
import re
import sqlite3
from typing import Any

from rlmcli.errors import WorkspaceError
from rlmcli.workspace.reader import INDEX, WorkspaceReader

STOPWORDS = frozenset(
    "a an and are as at be by can could did do does for from had has have how i if in into is it "
    "its may might of on or our shall should so than that the their them then there these they this "
    "those to was we were what when where which who whom why will with would you your".split()
)
HEADING_WEIGHT = 3.0
HEADING_BOOST = 1.0  # a passage whose heading is all query words scores (1 + this) times its BM25


# Words too common to say what a section is about ("Invoking R under Windows" is not about a
# question's "under the licence").
BOOST_STOPWORDS = STOPWORDS | frozenset(
    "under not use used using get make turn back one two all any also only like just about over after "
    "before more most other some such very way well".split())


def _stems(text: str) -> set[str]:
    """Content words cut to six letters: 'terminate', 'termination' and 'terminating' meet."""
    return {w[:6] for w in re.findall(r"[^\W\d_]+", text.lower()) if w not in BOOST_STOPWORDS and len(w) > 2}


def heading_boost(heading: str, terms: set[str]) -> float:
    """BM25 counts a heading word like any other; a section *named* by the query is what users
    mean ("termination clauses" → "6. Termination", not a clause that mentions termination)."""
    words = _stems(heading)
    if not words or not terms:
        return 1.0
    return 1.0 + HEADING_BOOST * len(words & terms) / len(words)


class Passage:
    __slots__ = ("doc", "page", "line", "score", "heading", "text")

    def __init__(self, doc: str, page: int, line: int, score: float, heading: str, text: str) -> None:
        self.doc, self.page, self.line, self.score, self.heading, self.text = doc, page, line, score, heading, text

    @property
    def cite(self) -> str:
        return f"[{self.doc} p.{self.page} l.{self.line}]"

    def to_dict(self) -> dict[str, Any]:
        return {"doc": self.doc, "page": self.page, "line": self.line, "score": round(self.score, 4),
                "heading": self.heading, "text": self.text}

    def __repr__(self) -> str:
        head = f" ({self.heading})" if self.heading else ""
        return f"{self.cite}{head} score={self.score:.2f}\n{self.text}"

    __str__ = __repr__


def fts_query(query: str) -> str:
    """A natural-language query as an FTS5 OR-query; '48,500' or '10-K' become phrases."""
    terms = []
    for token in re.findall(r"\w[\w'.,&$%/-]*", query):
        parts = re.findall(r"\w+", token.lower())
        if not parts or (len(parts) == 1 and parts[0] in STOPWORDS):
            continue
        terms.append('"' + " ".join(parts) + '"')
    return " OR ".join(dict.fromkeys(terms))


class Searcher:
    """Search one workspace's index; the connection is opened on first use and kept."""

    def __init__(self, reader: WorkspaceReader, immutable: bool = False) -> None:
        # The sandbox opens the index immutable (it may not create the WAL's shared-memory file);
        # the parent opens it read-only, seeing commits made meanwhile.
        self.reader = reader
        self.immutable = immutable
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            path = os.path.abspath(self.reader.path(INDEX))
            mode = "immutable=1" if self.immutable else "mode=ro"
            self._db = sqlite3.connect(f"file:{path}?{mode}", uri=True, check_same_thread=False)
        return self._db

    def search(self, query: str, k: int = 10, doc: str | None = None) -> list[Passage]:
        """Up to `k` passages, the best one per page, BM25 with headings weighted."""
        match = fts_query(str(query))
        if not match:
            return []
        sql = (f"SELECT doc, page, line, heading, body, bm25(chunks, {HEADING_WEIGHT}, 1.0) AS score "
               "FROM chunks WHERE chunks MATCH ?")
        args: list[Any] = [match]
        if doc is not None:
            sql += " AND doc = ?"
            args.append(self.reader.resolve(doc))
        sql += " ORDER BY score LIMIT ?"
        args.append(max(k * 5, 50))
        terms = _stems(query)
        try:
            found = self._conn().execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:  # missing, truncated or not SQLite at all
            if "fts5" in str(exc) or "syntax" in str(exc):
                raise
            raise WorkspaceError(f"{self.reader.path(INDEX)}: the search index is missing or damaged ({exc}); "
                                 "ingest the files again into a new workspace") from None
        rows = [(d, int(page), int(line), heading or "", body, -float(score) * heading_boost(heading or "", terms))
                for d, page, line, heading, body, score in found]
        rows.sort(key=lambda r: r[5], reverse=True)
        seen: set[tuple[str, int, str]] = set()
        out: list[Passage] = []
        for d, page, line, heading, body, score in rows:
            if (d, page, heading) in seen:
                continue  # the best passage per page and section
            seen.add((d, page, heading))
            out.append(Passage(d, page, line, score, heading, body))
            if len(out) >= k:
                break
        return out

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
