"""Ranked full-text search over a workspace's index. Standard library only: the sandbox's
`search()` helper and the parent's `rlm search` run this same code."""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from rlmcli.errors import UsageError, WorkspaceError
from rlmcli.workspace.reader import INDEX, WorkspaceReader

STOPWORDS = frozenset(
    "a an and are as at be by can could did do does for from had has have how i if in into is it "
    "its may might of on or our shall should so than that the their them then there these they this "
    "those to was we were what when where which who whom why will with would you your".split()
)
HEADING_WEIGHT = 3.0
def _significant(score: float) -> float:
    """Four significant digits: BM25 scores in a small workspace can be 1e-6, which rounding to
    four decimals would show as 0."""
    return float(f"{score:.4g}")


HEADING_BOOST = 1.0  # a passage whose heading is all query words scores (1 + this) times its BM25
# A query is one FTS5 OR over its words, and with many words a tier per word (see _ranked): work
# grows with the words asked, so they are bounded before any is looked up.
QUERY_CHARS = 10_000
QUERY_TERMS = 64


class QueryTooLong(UsageError):
    """A query longer, or with more distinct words, than search takes."""


class SearchStopped(WorkspaceError):
    """The search's `stop` check said to stop (a cancelled call, a deadline)."""


# Words too common to say what a section is about ("Invoking R under Windows" is not about a
# question's "under the licence").
BOOST_STOPWORDS = STOPWORDS | frozenset(
    "under not use used using get make turn back one two all any also only like just about over after "
    "before more most other some such very way well".split())


def _stems(text: str) -> set[str]:
    """Content words cut to six letters: 'terminate', 'termination' and 'terminating' meet."""
    return {w[:6] for w in re.findall(r"[^\W\d_]+", text.lower()) if w not in BOOST_STOPWORDS and len(w) > 2}


@functools.lru_cache(maxsize=1 << 16)
def _title_stems(doc: str, title: str) -> frozenset[str]:
    """A title's name words, not its version ("Mozilla Public License Version 2.0"); cached, as
    every search weighs every document's title."""
    return frozenset((_stems(title.split(" — ")[0]) - {"versio"}) or _stems(doc))


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
        return {"doc": self.doc, "page": self.page, "line": self.line, "score": _significant(self.score),
                "heading": self.heading, "text": self.text}

    def __repr__(self) -> str:
        head = f" ({self.heading})" if self.heading else ""
        return f"{self.cite}{head} score={self.score:.3g}\n{self.text}"

    __str__ = __repr__


def check_query(query: str) -> str:
    """The query, or QueryTooLong when it is over QUERY_CHARS or QUERY_TERMS distinct words."""
    query = str(query)
    if len(query) > QUERY_CHARS:
        raise QueryTooLong(f"a query of {len(query):,} characters: search takes at most {QUERY_CHARS:,}; "
                           "keep the words that name what you look for")
    match = fts_query(query)
    terms = match.count(" OR ") + 1 if match else 0
    if terms > QUERY_TERMS:
        raise QueryTooLong(f"a query of {terms:,} distinct words: search takes at most {QUERY_TERMS}; "
                           "keep the words that name what you look for")
    return query


def fts_query(query: str, drop: set[str] | frozenset[str] = frozenset()) -> str:
    """A natural-language query as an FTS5 OR-query; '48,500' or '10-K' become phrases, "Contoso's"
    is Contoso. Words in `drop` (as `_words` spells them) are left out."""
    terms = []
    for token in re.findall(r"\w[\w'’.,&$%/-]*", query):
        token = re.sub(r"['’]s?$", "", token)  # possessives: "Contoso's" names Contoso
        parts = re.findall(r"\w+", token.lower())
        if not parts or (len(parts) == 1 and (parts[0] in STOPWORDS or _words(parts[0]) <= drop and drop)):
            continue
        terms.append('"' + " ".join(parts) + '"')
    return " OR ".join(dict.fromkeys(terms))


def _words(text: str) -> set[str]:
    """Words that can name a document: content words cut to six letters, and numbers (years)."""
    return {w if w.isdigit() else w[:6] for w in re.findall(r"[^\W_]+", text.lower())
            if w not in BOOST_STOPWORDS and (len(w) > 2 or w.isdigit())}


class DocMatch:
    """A document ranked by how well the query names it (its card) and what its passages say."""

    __slots__ = ("doc", "score", "title", "card")

    def __init__(self, doc: str, score: float, title: str, card: str) -> None:
        self.doc, self.score, self.title, self.card = doc, score, title, card

    def to_dict(self) -> dict[str, Any]:
        return {"doc": self.doc, "score": _significant(self.score), "title": self.title, "card": self.card}

    def __repr__(self) -> str:
        about = " · ".join(x for x in (self.title, self.card) if x)
        return f"{self.doc} score={self.score:.3g}" + (f"  {about}" if about else "")

    __str__ = __repr__


DOC_BOOST = 2.0  # a passage of the document the query names best scores up to (1 + this) times
NAMED_DOCS = 5  # documents searched on their own when the query names them, besides the global search
TIERED_ABOVE = 20_000  # passages matching any term: above this, rank by AND-tiers first (see _ranked)
PARALLEL = 2  # connections querying at once: SQLite releases the GIL, so the tiers of one search overlap
Range = tuple[int, int]


class Searcher:
    """Search one workspace's index; connections are opened on first use and kept.

    `stop`, when set, is asked every few thousand SQLite steps; when it returns True the search
    ends with SearchStopped (the MCP server cancels a call, or bounds it by a deadline, so)."""

    def __init__(self, reader: WorkspaceReader, immutable: bool = False,
                 stop: Callable[[], bool] | None = None) -> None:
        # The sandbox opens the index immutable (it may not create the WAL's shared-memory file);
        # the parent opens it read-only, seeing commits made meanwhile.
        self.reader = reader
        self.immutable = immutable
        self.stop = stop
        self._local = threading.local()  # one connection per calling thread
        self._spare: list[sqlite3.Connection] = []  # for the helper threads of _all
        self._lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []
        self._total: int | None = None

    def _open(self) -> sqlite3.Connection:
        path = os.path.abspath(self.reader.path(INDEX))
        mode = "immutable=1" if self.immutable else "mode=ro"
        db = sqlite3.connect(f"file:{path}?{mode}", uri=True, check_same_thread=False)
        db.set_progress_handler(self._stopped, 10_000)
        with self._lock:
            self._opened.append(db)
        return db

    def _stopped(self) -> int:
        return 1 if self.stop is not None and self.stop() else 0

    def _conn(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._open()
        return db

    def _all(self, queries: list[tuple[str, Any]]) -> list[list[Any]]:
        """Several queries' rows, run on up to PARALLEL connections at once. The threads end with
        the call: none outlives it (a sandbox's threads are counted after every cell)."""
        if len(queries) < 2:
            return [self._execute(sql, args) for sql, args in queries]
        results: list[list[Any] | BaseException | None] = [None] * len(queries)
        todo = iter(range(len(queries)))

        def work() -> None:
            with self._lock:
                db = self._spare.pop() if self._spare else None
            db = db or self._open()
            try:
                while True:
                    with self._lock:
                        i = next(todo, None)
                    if i is None:
                        return
                    try:
                        results[i] = self._run_on(db, *queries[i])
                    except BaseException as exc:  # noqa: BLE001 - raised in the caller
                        results[i] = exc
            finally:
                with self._lock:
                    self._spare.append(db)

        threads = [threading.Thread(target=work, name="rlm-search") for _ in range(min(PARALLEL, len(queries)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = []
        for r in results:
            if isinstance(r, BaseException):
                raise r
            assert r is not None
            out.append(r)
        return out

    def _execute(self, sql: str, args: list[Any] | tuple[Any, ...]) -> list[Any]:
        return self._run_on(self._conn(), sql, args)

    def _run_on(self, db: sqlite3.Connection, sql: str, args: list[Any] | tuple[Any, ...]) -> list[Any]:
        """Rows, or one clear error for an index that is missing or damaged."""
        if self._stopped():  # asked before each query, and every 10,000 SQLite steps within one
            raise SearchStopped("the search was stopped before it finished")
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:  # missing, truncated or not SQLite at all
            if self._stopped():  # our progress handler interrupted it
                raise SearchStopped("the search was stopped before it finished") from None
            raise WorkspaceError(f"{self.reader.path(INDEX)}: the search index is missing or damaged ({exc}); "
                                 "ingest the files again into a new workspace") from None

    # ---- documents --------------------------------------------------------------------------
    def named(self, query: str) -> dict[str, float]:
        """How strongly the query names each document, in (0, 1]; see `naming`."""
        return {d: w for d, (w, _) in self.naming(query).items()}

    def naming(self, query: str) -> dict[str, tuple[float, set[str]]]:
        """Each document the query names: (how strongly, in (0, 1]; the query's words that name it
        by its card's company, form or period). A filing is named by its company, and then by
        how well the year, form and quarter the query gives fit its card ("3M 2018 10-K" names
        3M's 2018 annual report fully and its 2017 one by 0.7); other documents by the share of
        their title the query has ("R Internals: installing packages" names "R Internals" wholly
        and "R Installation and Administration" by half)."""
        from rlmcli.workspace.cards import Asked, card_text, naming_weight

        cards = self._all_cards()
        asked = Asked(check_query(query))
        words = _words(query)
        titles = {doc: _title_stems(doc, card.get("title", ""))
                  for doc, card in cards.items() if not (card.get("company") and card.get("form"))}
        most = max((len(t & words) for t in titles.values()), default=0) or 1
        out = {}
        weighed = {doc: naming_weight(card, asked) for doc, card in cards.items()}
        company_named = any(named for _, named in weighed.values())
        for doc, card in cards.items():
            weight, named = weighed[doc]
            if company_named and not named:
                weight = 0.0  # "Nike's revenue in fiscal 2023" names Nike's filing, not every 2023 one
            # The words that name a filing (its company, "fiscal", the year) picked it; in its
            # passages they only mark the cover, so search leaves them out.
            used = words & _words(card_text(card)) if weight > 0 else set()
            if doc in titles and (title := titles[doc]):
                # the share of the title named, and the more words named the better: "GNU Lesser
                # General Public License" names the LGPL more than the GPL, whose title it contains
                by_title = len(title & words) / len(title) * len(title & words) / most
                if by_title > weight:
                    weight, used = by_title, set()  # a title's words run through its text: keep them
            if weight > 0:
                out[doc] = (weight, used)
        return out

    def _all_cards(self) -> dict[str, dict[str, str]]:
        """Every document's card, read again only when the index changed."""
        import json

        version = self._execute("PRAGMA data_version", ())[0][0] if not self.immutable else 0
        cached = getattr(self._local, "cards", None)
        if cached is not None and cached[0] == version:
            return cached[1]  # type: ignore[no-any-return]
        rows = self._execute("SELECT doc, card FROM cards", ())
        cards = {doc: json.loads(card) for doc, card in rows}
        self._local.cards = (version, cards)
        return cards

    def docs(self, query: str, k: int = 10) -> list[DocMatch]:
        """Documents for a query: those it names first, then those whose passages match it best."""
        named = self.named(query)
        scores: dict[str, float] = {d: 10.0 * w for d, w in named.items()}
        for p in self.search(query, k=50):
            scores[p.doc] = scores.get(p.doc, 0.0) + p.score / (1 + DOC_BOOST * named.get(p.doc, 0.0)) / 10
        cards = dict(self._cards(list(scores)))
        ranked = sorted(scores.items(), key=lambda x: -x[1])[:k]
        return [DocMatch(d, s, *cards.get(d, ("", ""))) for d, s in ranked]

    def _cards(self, docs: list[str]) -> list[tuple[str, tuple[str, str]]]:
        if not docs:
            return []
        marks = ",".join("?" * len(docs))
        rows = self._execute(f"SELECT doc, title, info FROM doc_cards WHERE doc IN ({marks})", docs)
        return [(d, (t, i)) for d, t, i in rows]

    def _ranges(self, docs: list[str]) -> list[Range] | None:
        """Each document's run of passage rowids; None when one has no passages."""
        marks = ",".join("?" * len(docs))
        rows = self._execute(f"SELECT first_row, last_row FROM docs WHERE doc IN ({marks})", docs)
        if any(a is None for a, _ in rows):
            return None
        return [(int(a), int(b)) for a, b in rows]

    # ---- passages ---------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, doc: str | list[str] | None = None) -> list[Passage]:
        """Up to `k` passages, the best per page and section: BM25 with headings weighted, times
        a boost for a section the query names and one for a document the query names. A query
        over QUERY_CHARS or QUERY_TERMS raises QueryTooLong.

        When the query names a document well ("Contoso's revenue in fiscal 2023"), the words that
        name it are taken out of the passage query: they picked the document, and on its cover
        page they would outscore the revenue line."""
        query = check_query(query)
        naming = self.naming(query)
        only = self.reader.select(doc) if doc is not None else None
        if only is not None:
            naming = {d: v for d, v in naming.items() if d in only}
        named = {d: w for d, (w, _) in naming.items()}
        strong = sorted((d for d, w in named.items() if w >= 0.5), key=lambda d: -named[d])[:NAMED_DOCS]
        drop = naming[strong[0]][1] if strong and DOC_BOOST else set()
        match = fts_query(str(query), drop) or fts_query(str(query))
        if not match:
            return []
        limit = max(k * 5, 50)
        terms = _stems(query) - drop
        if only is not None:
            rows = self._ranked(match, limit, self._ranges(only), only)
        else:
            rows = self._ranked(match, limit, None, None)
            # The documents the query names are searched on their own too: among 300 filings,
            # the one named may have no passage in the global top 50.
            if strong and len(named) < len(self.reader.documents):
                seen = {r[0] for r in rows}
                rows += [r for r in self._ranked(match, max(k * 2, 20), self._ranges(strong), strong) if r[0] not in seen]
        scored = []
        for _rowid, d, page, line, heading, body, score in rows:
            boost = heading_boost(heading or "", terms) * (1 + DOC_BOOST * named.get(d, 0.0))
            scored.append((d, int(page), int(line), heading or "", body, -float(score) * boost))
        scored.sort(key=lambda r: r[5], reverse=True)
        seen_pages: set[tuple[str, int, str]] = set()
        out: list[Passage] = []
        for d, page, line, heading, body, score in scored:
            if (d, page, heading) in seen_pages:
                continue  # the best passage per page and section
            seen_pages.add((d, page, heading))
            out.append(Passage(d, page, line, score, heading, body))
            if len(out) >= k:
                break
        return out

    _SELECT = "SELECT rowid, doc, page, line, heading, body, bm25(chunks, {w}, 1.0) AS score FROM chunks WHERE chunks MATCH ?"

    def _query(self, match: str, limit: int, ranges: list[Range] | None, docs: list[str] | None) -> list[Any]:
        sql = self._SELECT.format(w=HEADING_WEIGHT)
        if ranges is not None:
            out: list[Any] = []
            for lo, hi in ranges:  # the FTS index seeks to each document's rows
                out += self._execute(sql + " AND rowid BETWEEN ? AND ? ORDER BY score LIMIT ?", (match, lo, hi, limit))
            return sorted(out, key=lambda r: r[6])[:limit]
        if docs is not None:
            marks = ",".join("?" * len(docs))
            return self._execute(sql + f" AND doc IN ({marks}) ORDER BY score LIMIT ?", [match, *docs, limit])
        return self._execute(sql + " ORDER BY score LIMIT ?", (match, limit))

    def _ranked(self, match: str, limit: int, ranges: list[Range] | None, docs: list[str] | None) -> list[Any]:
        """The best `limit` rows for an OR of the query's terms. BM25 must score every row that
        matches any term, which on 100 M tokens and a common word is 0.1-0.5 s. So when many rows
        match, rank those with every term, and those with all but one, first: FTS5 gives them the
        same BM25 as the OR query would (the same terms, so the same IDF and lengths), and they
        are almost always its top rows. Only when those are too few does the full OR run."""
        terms = match.split(" OR ")
        if len(terms) < 2 or ranges is not None or docs is not None or self._passages() <= TIERED_ABOVE:
            return self._query(match, limit, ranges, docs)  # a small index: the OR query is cheap
        # The count and the tiers run together (on two connections); the tiers are wasted, and
        # cheap, when few rows match and the plain OR query decides.
        tiers = [terms] + ([[t for t in terms if t != left] for left in terms] if len(terms) > 2 else [])
        sql = self._SELECT.format(w=HEADING_WEIGHT) + " ORDER BY score LIMIT ?"
        count_rows, *tier_rows = self._all([("SELECT count(*) FROM chunks WHERE chunks MATCH ?", (match,))]
                                           + [(sql, (" AND ".join(tier), limit)) for tier in tiers])
        if count_rows[0][0] <= TIERED_ABOVE:
            return self._query(match, limit, None, None)
        best: dict[int, Any] = {}
        for rows in tier_rows:
            for row in rows:
                if row[0] not in best or row[6] < best[row[0]][6]:
                    best[row[0]] = row  # a row's true score is its best: the tier that names all its terms
        found = sorted(best.values(), key=lambda r: r[6])
        if len(found) < min(limit, 10):
            return self._query(match, limit, None, None)
        return found[:limit]

    def _passages(self) -> int:
        """How many passages the index holds (its last rowid: an index seek, not a scan), once."""
        if self._total is None:
            rows = self._execute("SELECT rowid FROM chunks ORDER BY rowid DESC LIMIT 1", ())
            self._total = int(rows[0][0]) if rows else 0
        return self._total

    def close(self) -> None:
        with self._lock:
            opened, self._opened, self._spare = self._opened, [], []
        for db in opened:
            db.close()
        self._local = threading.local()
