"""The workspace's one writer: an exclusive lock, one open index transaction, documents staged in
`.tmp/` and committed together by `flush()` through the journal (journal.py).

A document is built in `.tmp/` (its pages spooled there as they are extracted) and its index rows
go into the open SQLite transaction; nothing is visible yet. A flush commits every staged change
at once: pages, manifest and index switch together, or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from rlmcli.records import DocumentRecord
from rlmcli.workspace.build import DocumentBuild, PageSpool
from rlmcli.workspace.cards import make_card
from rlmcli.workspace.journal import Journal, Op, OpKind, recover
from rlmcli.workspace.reader import page_name, slugify
from rlmcli.workspace.store import Workspace

__all__ = ["WorkspaceWriter"]


class WorkspaceWriter:
    """Changes to one workspace, under its lock, committed atomically by `flush()`. Flushes happen
    every few seconds during a long ingest and when the writer ends. Use `Workspace.writer()`."""

    FLUSH_EVERY = 2.0  # seconds; bounds both the work lost in a crash and manifest rewrites

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._lock_fh: IO[str] | None = None
        self._conn: sqlite3.Connection | None = None
        self._in_txn = False
        self._ops: list[Op] = []  # staged, in order; committed by the next flush
        self._changed = False
        self._last_flush = time.monotonic()
        self._flush_cost = 0.0
        self.manifest: dict[str, Any] = {}  # our own copy of the manifest, but for its documents
        self._records: dict[str, DocumentRecord] = {}  # the documents, as the next flush lists them
        self._by_source: dict[str, str] | None = None
        self._by_sha: dict[str, str] | None = None

    # ---- the lock -------------------------------------------------------------------------
    def acquire(self, on_wait: Callable[[], None] | None) -> None:
        import fcntl

        self._lock_fh = open(self.ws.lock_path, "a+")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX)
        recover(self.ws, self.conn)
        self.manifest = self._load_manifest()
        for leftover in (".tmp", ".trash"):
            shutil.rmtree(self.ws.root / leftover, ignore_errors=True)
        self._backfill_cards()

    def _load_manifest(self) -> dict[str, Any]:
        from rlmcli.errors import WorkspaceError

        path = self.ws.manifest_path
        try:
            manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            self._records = {doc: DocumentRecord.from_json(rec) for doc, rec in manifest.pop("documents").items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WorkspaceError(f"{path}: unreadable manifest ({exc})") from None
        return manifest

    def release(self) -> None:
        if self._conn is not None:
            if self._in_txn and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")  # not flushed: as if it never happened
                self._in_txn = False
            self._conn.close()
            self._conn = None
        shutil.rmtree(self.ws.root / ".tmp", ignore_errors=True)  # what was never committed
        if self._lock_fh is not None:
            self._lock_fh.close()  # closing drops the flock
            self._lock_fh = None

    def _backfill_cards(self) -> None:
        """Cards for documents whose card is missing or older than the card reader (made from the
        first pages, committed with the next flush)."""
        from rlmcli.workspace import index

        missing = [d for d in index.cards_missing(self.conn()) if d in self._records]
        for doc in missing:
            meta = self.ws.meta(doc)
            total = meta["pages"]
            pages = self.ws.doc_dir(doc) / "pages"
            first = ((pages / page_name(n, total)).read_text(encoding="utf-8") for n in range(1, total + 1))
            card = make_card(meta.get("name", doc), meta.get("metadata") or {},
                             [tuple(o) for o in meta.get("outline", [])], first)  # reads until FIRST_CHARS
            index.add_card(self.txn(), doc, meta.get("name", doc), card)
            if meta.get("card") != card:
                self.update_record(doc, card=card)
        if missing:
            self._changed = True

    # ---- the transaction ------------------------------------------------------------------
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            from rlmcli.workspace import index

            self._conn = index.connect(self.ws.index_path)
        return self._conn

    def txn(self) -> sqlite3.Connection:
        """The connection, inside the writer's one open transaction."""
        conn = self.conn()
        if not self._in_txn:
            conn.execute("BEGIN")
            self._in_txn = True
        return conn

    def new_tmp(self) -> Path:
        """A fresh directory under .tmp/ for a document being built (removed unless committed)."""
        tmp = self.ws.root / ".tmp" / os.urandom(8).hex()
        tmp.mkdir(parents=True)
        return tmp

    # ---- queries ------------------------------------------------------------------------
    @property
    def documents(self) -> dict[str, DocumentRecord]:
        """The documents as they will be once staged changes are flushed (read it, do not change it)."""
        return self._records

    def _lookups(self) -> tuple[dict[str, str], dict[str, str]]:
        # Rebuilt only when the documents change: O(1) lookups keep 10,000-file ingests linear.
        if self._by_source is None or self._by_sha is None:
            self._by_source = {rec.source: doc for doc, rec in self._records.items()}
            self._by_sha = {rec.sha256: doc for doc, rec in self._records.items() if rec.source != "-"}
        return self._by_source, self._by_sha

    def find_by_source(self, source: str) -> str | None:
        return self._lookups()[0].get(source)

    def find_by_sha(self, sha256: str) -> str | None:
        return self._lookups()[1].get(sha256)

    def _set_record(self, doc: str, record: DocumentRecord | None) -> None:
        if record is None:
            self._records.pop(doc, None)
            self._by_source = self._by_sha = None
            return
        self._records[doc] = record
        if self._by_source is not None and self._by_sha is not None:
            self._by_source[record.source] = doc
            if record.source != "-":  # stdin is its own document, never the original of a duplicate
                self._by_sha[record.sha256] = doc

    def _unique_id(self, name: str) -> str:
        base = slugify(name)
        stem, dot, ext = base.rpartition(".")
        if not dot or not stem or len(ext) > 8:
            stem, ext = base, ""
        doc, n = base, 2
        while doc in self._records or self.ws.doc_dir(doc).exists():
            doc = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"  # report-2.pdf, not report.pdf-2
            n += 1
        return doc

    # ---- changes ------------------------------------------------------------------------
    def _stage(self, op: Op) -> None:
        if op.kind is not OpKind.META:
            self._ops = [o for o in self._ops if o.doc != op.doc]  # a later version wins
        self._ops.append(op)
        self._changed = True

    def add(self, build: DocumentBuild, replace: str | None = None) -> str:
        """Stage one document (replacing doc `replace` when given); returns its id. It becomes
        visible, with its index rows, at the next flush.

        Pages are written and indexed before the token counts are awaited: on a small PDF the
        counting helper is still building its encoding when extraction ends."""
        from rlmcli.workspace import index

        doc = replace or self._unique_id(build.name)
        spool = build.pages if isinstance(build.pages, PageSpool) else PageSpool.of(self.new_tmp(), build.pages)
        tmp = spool.directory
        try:
            conn = self.txn()
            conn.execute("SAVEPOINT add_document")  # undone if this document fails below
            try:
                headings = index.page_headings_iter(build.page_count, [(p, t) for _, p, t in build.outline])
                index.add_document(conn, doc, build.sha256, build.page_texts(), headings)
                card = make_card(build.name, build.metadata, build.outline, build.page_texts())
                index.add_card(conn, doc, build.name, card)
                meta = _write_meta(tmp, doc, build, card)
            except BaseException:
                conn.execute("ROLLBACK TO add_document")
                raise
            finally:
                conn.execute("RELEASE add_document")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._stage(Op(OpKind.PUT, doc, str(tmp)))
        if replace:
            self._set_record(doc, None)  # its old sha256 must stop pointing here
        self._set_record(doc, DocumentRecord.from_json(meta))
        self.maybe_flush()
        return doc

    def _current_meta(self, doc: str) -> dict[str, Any]:
        for op in reversed(self._ops):
            if op.doc == doc and op.kind is OpKind.PUT:
                return dict(json.loads((Path(op.staged) / "meta.json").read_text(encoding="utf-8")))
            if op.doc == doc and op.kind is OpKind.META:
                return dict(json.loads(Path(op.staged).read_text(encoding="utf-8")))
        return self.ws.meta(doc)

    def update_record(self, doc: str, **changes: Any) -> None:
        """Change fields of a document's meta.json and record (a new mtime, an alias), at the next flush."""
        meta = self._current_meta(doc)
        meta.update(changes)
        staged = self.ws.root / ".tmp" / f"{os.urandom(8).hex()}.meta.json"
        staged.parent.mkdir(exist_ok=True)
        staged.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        self._stage(Op(OpKind.META, doc, str(staged)))
        self._set_record(doc, DocumentRecord.from_json(meta))
        self.maybe_flush()

    def remove(self, doc: str) -> None:
        from rlmcli.workspace import index

        index.remove_document(self.txn(), doc)
        self._stage(Op(OpKind.DELETE, doc))
        self._set_record(doc, None)

    def maybe_flush(self) -> None:
        # A big manifest takes a while to write: flush less often as it grows.
        if time.monotonic() - self._last_flush >= max(self.FLUSH_EVERY, 10 * self._flush_cost):
            self.flush()

    def flush(self) -> None:
        """Commit every staged change at once (journal, index, renames, manifest)."""
        if not self._changed:
            return
        from rlmcli.forking import sigint_held

        with sigint_held():  # Ctrl-C lands after the commit, not between its steps
            self._flush()

    def _flush(self) -> None:
        started = time.monotonic()
        generation = int(self.manifest.get("generation", 0)) + 1
        self.manifest.update(generation=generation, totals=_totals(self._records), updated=time.time())
        manifest = {**self.manifest, "documents": {doc: rec.to_json() for doc, rec in self._records.items()}}
        journal = Journal(generation, self._ops, manifest)
        journal.write(self.ws.root)
        conn = self.txn()
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
        conn.execute("COMMIT")  # the commit point
        self._in_txn = False
        journal.apply(self.ws)
        self._ops, self._changed = [], False
        self._last_flush = time.monotonic()
        self._flush_cost = self._last_flush - started


def _totals(docs: dict[str, DocumentRecord]) -> dict[str, int]:
    return {
        "documents": len(docs),
        "pages": sum(d.pages for d in docs.values()),
        "chars": sum(d.chars for d in docs.values()),
        "tokens": sum(d.tokens for d in docs.values()),
    }


def _write_meta(tmp: Path, doc: str, build: DocumentBuild, card: dict[str, str]) -> dict[str, Any]:
    tokens = build.page_tokens()
    meta = {
        "id": doc, "name": build.name, "source": build.source, "aliases": [],
        "sha256": build.sha256, "size": build.size, "mtime_ns": build.mtime_ns,
        "type": build.type, "extractor": build.extractor, "pages": build.page_count,
        "chars": build.chars(), "tokens": sum(tokens),
        "page_tokens": tokens, "warnings": build.warnings, "metadata": build.metadata,
        "outline": [list(o) for o in build.outline], "card": card, "ingested_at": time.time(),
        "extraction": build.extraction,
    }
    meta.update(build.extra)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if build.outline:
        (tmp / "outline.txt").write_text(_outline_text(build.outline), encoding="utf-8")
    return meta


def _outline_text(outline: list[tuple[int, int, str]]) -> str:
    return "".join(f"{'  ' * (level - 1)}{title}  (p. {page})\n" for level, page, title in outline)
