"""Workspace layout on disk, its manifest, the write lock and atomic commits.

    <root>/manifest.json            documents, totals, generation (a summary of meta.json files)
    <root>/docs/<id>/meta.json      the truth about one document
    <root>/docs/<id>/outline.txt    headings / bookmarks with page numbers
    <root>/docs/<id>/pages/0001.txt one file per page or section
    <root>/index.sqlite             FTS5 over page passages

Writers hold an exclusive `flock` on `.lock`. A document is built in `.tmp/` (its pages spooled
there as they are extracted) and its index rows go into one open SQLite transaction; nothing is
visible yet. A flush commits everything at once, through a journal:

  1. `.journal.json` names the new generation, every rename to make and the new manifest;
  2. the index transaction commits, recording that generation in its `meta` table;
  3. the renames are made and the manifest replaced; the journal is removed.

A writer killed before 2 leaves the previous generation (the journal is discarded, the index
never saw the change); killed after it, the next opener rolls the journal forward. Either way
pages, manifest and index switch together. Workspaces written before 0.2 recover through
`.dirty` as they did then.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlmcli.errors import WorkspaceError
from rlmcli.workspace.cards import make_card
from rlmcli.workspace.reader import (
    FORMAT_VERSION,
    MANIFEST,
    PAGE_SEP,
    TEXT,
    TEXT_INDEX,
    TextIndex,
    WorkspaceReader,
    page_name,
    slugify,
)

__all__ = ["DocumentBuild", "Workspace", "WorkspaceWriter", "page_name", "slugify", "write_atomic"]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@dataclass
class DocumentBuild:
    """Everything needed to commit one document."""

    name: str  # what the user calls it: the file name, or 'stdin'
    source: str  # absolute path, or '-' for stdin
    sha256: str
    size: int
    mtime_ns: int
    type: str
    extractor: str
    pages: list[str] | PageSpool  # a spool: pages already written to disk as they were extracted
    tokens: list[int] | Callable[[], list[int]]  # a callable while the token helper is counting
    outline: list[tuple[int, int, str]] = field(default_factory=list)  # (level, page, title)
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # more meta.json fields (ocr_pages, ...)
    attachments: list[Any] = field(default_factory=list)  # Sources found inside this one (a mail's files)
    extraction: str = ""  # the options that shaped its text ("ocr=always"): part of its identity

    def page_tokens(self) -> list[int]:
        if callable(self.tokens):
            self.tokens = self.tokens()
        return self.tokens

    @property
    def page_count(self) -> int:
        return self.pages.count if isinstance(self.pages, PageSpool) else len(self.pages)

    def page_texts(self) -> Iterator[str]:
        return self.pages.texts() if isinstance(self.pages, PageSpool) else iter(self.pages)

    def chars(self) -> int:
        return self.pages.chars if isinstance(self.pages, PageSpool) else sum(len(p) for p in self.pages)


class PageSpool:
    """Pages written to `<directory>/pages/` as they are extracted, so a 300 MB text file never
    sits in memory: only counts are kept. Each page also goes to the end of text.txt, whose page
    offsets `finish()` writes to text.idx; `finish()` also fixes the page files' name width."""

    def __init__(self, directory: Path, on_page: Callable[[int], None] | None = None) -> None:
        self.directory = directory
        self.pages_dir = directory / "pages"
        self.pages_dir.mkdir(parents=True)
        self.count = 0
        self.chars = 0
        self.on_page = on_page
        self._text = open(directory / TEXT, "wb")
        self._bytes = self._offset = 0  # bytes and characters of text.txt so far
        self._starts: tuple[list[int], list[int]] = ([], [])

    def add(self, text: str) -> None:
        data = text.encode("utf-8")
        if self.count:
            self._text.write(_SEP_BYTES)
            self._bytes += len(_SEP_BYTES)
            self._offset += len(PAGE_SEP)
        self._starts[0].append(self._bytes)
        self._starts[1].append(self._offset)
        self._text.write(data)
        self._bytes += len(data)
        self._offset += len(text)
        self.count += 1
        self.chars += len(text)
        with open(self.pages_dir / page_name(self.count, 1), "wb") as fh:
            fh.write(data)
        if self.on_page is not None:
            self.on_page(self.count)

    def finish(self) -> None:
        """Close text.txt, write its page offsets, and rename pages to the width a document of
        this many pages uses (10,000 pages or more)."""
        self._text.close()
        index = TextIndex(self._starts[0] + [self._bytes], self._starts[1] + [self._offset])
        (self.directory / TEXT_INDEX).write_bytes(index.to_bytes())
        if page_name(1, self.count) != page_name(1, 1):
            for n in range(1, self.count + 1):
                os.rename(self.pages_dir / page_name(n, 1), self.pages_dir / page_name(n, self.count))

    def close(self) -> None:
        self._text.close()

    def texts(self) -> Iterator[str]:
        for n in range(1, self.count + 1):
            yield (self.pages_dir / page_name(n, self.count)).read_text(encoding="utf-8")


_SEP_BYTES = PAGE_SEP.encode()


class Workspace:
    """A workspace directory. Reading needs no lock; writing goes through `writer()`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._reader: WorkspaceReader | None = None

    # ---- layout -------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def docs_dir(self) -> Path:
        return self.root / "docs"

    @property
    def index_path(self) -> Path:
        return self.root / "index.sqlite"

    def doc_dir(self, doc: str) -> Path:
        return self.docs_dir / doc

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @classmethod
    def create(cls, root: Path, auto: bool = False) -> Workspace:
        ws = cls(root)
        if ws.root.exists() and not ws.root.is_dir():
            raise WorkspaceError(f"{root}: exists and is not a directory")
        if ws.root.is_dir() and not ws.exists() and any(ws.root.iterdir()):
            raise WorkspaceError(f"{root}: directory is not empty and is not an rlm workspace")
        ws.docs_dir.mkdir(parents=True, exist_ok=True)
        if not ws.exists():
            manifest = {"format": FORMAT_VERSION, "auto": auto, "created": time.time(),
                        "documents": {}, "totals": _totals({})}
            write_atomic(ws.manifest_path, json.dumps(manifest, indent=1))
        return ws

    @classmethod
    def open(cls, root: Path) -> Workspace:
        ws = cls(root)
        if not ws.exists():
            raise WorkspaceError(f"no rlm workspace at {root} (create one with `rlm ingest FILE -w {root}`)")
        ws.settle()
        return ws

    # ---- reading (through the one reader) ------------------------------------------------
    @property
    def reader(self) -> WorkspaceReader:
        if self._reader is None:
            self._reader = WorkspaceReader(self.root)
        return self._reader

    def manifest(self) -> dict[str, Any]:
        """The manifest (cached until the file changes): read it, do not change it."""
        return self.reader.manifest()

    def documents(self) -> dict[str, dict[str, Any]]:
        return self.reader.documents

    def resolve_doc(self, name: str) -> str:
        """A document id from its id, file name (with or without extension), slug or unique prefix,
        or the path of the file it was ingested from (`rlm show ~/deal/contract.pdf`)."""
        by_path = self.doc_for_path(name)
        return by_path if by_path is not None else self.reader.resolve(name)

    def doc_for_path(self, name: str, by_content: bool = False) -> str | None:
        """The document ingested from the file at `name` (by its path; with `by_content`, else by
        its content), or None."""
        if name in ("", "-") or len(name) > 4096:  # not a path (the reader names an overlong name)
            return None
        path = Path(name).expanduser()
        try:
            if not path.is_file():
                return None
        except OSError:  # a name too long or not valid as a path: not one
            return None
        key = str(path.resolve())
        docs = self.documents()
        for doc, rec in docs.items():
            if rec.get("source") == key or key in (rec.get("aliases") or []):
                return doc
        if not by_content:
            return None
        try:
            from rlmcli.workspace.build import hash_file

            sha = hash_file(path)
        except OSError:
            return None
        return next((doc for doc, rec in docs.items() if rec.get("sha256") == sha), None)

    def meta(self, doc: str) -> dict[str, Any]:
        return self.reader.meta(doc)

    def page_path(self, doc: str, number: int) -> Path:
        return Path(self.reader.page_file(doc, number))

    def read_page(self, doc: str, number: int) -> str:
        return self.reader.read_page(doc, number)

    def read_page_file(self, doc: str, number: int, total: int) -> str:
        """A page by its file name, without asking the manifest (recovery)."""
        return (self.doc_dir(doc) / "pages" / page_name(number, total)).read_text(encoding="utf-8")

    def settle(self) -> None:
        """Finish or discard a commit a killed writer left half-done, when no writer is active;
        wait for one that is (its commit takes milliseconds)."""
        if not (self.root / JOURNAL).exists():
            return
        import fcntl

        try:
            fh = open(self.root / ".lock", "a+")
        except OSError:
            return  # a read-only workspace: nothing we could repair
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            recover(self)

    def touch(self) -> None:
        """Record a use, for `rlm workspaces` and `--prune`; a workspace outside RLM_HOME gets a
        link there, so it is listed and can be the last used one."""
        with contextlib.suppress(OSError):
            (self.root / ".last_used").touch()
        from rlmcli.config import links_dir, rlm_home

        root = self.root.resolve()
        if root.is_relative_to(rlm_home().resolve()):
            return
        import hashlib

        link = links_dir() / hashlib.sha256(str(root).encode()).hexdigest()[:16]
        with contextlib.suppress(OSError):
            if not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(root, link)

    def last_used(self) -> float:
        for name in (".last_used", MANIFEST):
            with contextlib.suppress(OSError):
                return (self.root / name).stat().st_mtime
        return 0.0

    def size_bytes(self) -> int:
        total = 0
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        return total

    @contextlib.contextmanager
    def writer(self, on_wait: Callable[[], None] | None = None) -> Iterator[WorkspaceWriter]:
        w = WorkspaceWriter(self)
        w.acquire(on_wait)
        try:
            yield w
            w.flush()
        finally:
            w.release()


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"{path}: unreadable manifest ({exc})") from None
    return data


def _totals(docs: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {
        "documents": len(docs),
        "pages": sum(d["pages"] for d in docs.values()),
        "chars": sum(d["chars"] for d in docs.values()),
        "tokens": sum(d["tokens"] for d in docs.values()),
    }


class WorkspaceWriter:
    """Changes to one workspace, under its lock, committed atomically by `flush()` (see the module
    docstring). Flushes happen every few seconds during a long ingest and when the writer ends."""

    FLUSH_EVERY = 2.0  # seconds; bounds both the work lost in a crash and manifest rewrites

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._lock_fh: Any = None
        self._conn: Any = None
        self._in_txn = False
        self._ops: list[list[str]] = []  # pending: ["put", doc, tmp dir] | ["delete", doc] | ["meta", doc, tmp file]
        self._changed = False
        self._last_flush = time.monotonic()
        self._flush_cost = 0.0
        self.manifest: dict[str, Any] = {}
        self._by_source: dict[str, str] | None = None
        self._by_sha: dict[str, str] | None = None

    # ---- lock and recovery ----------------------------------------------------------------
    def acquire(self, on_wait: Callable[[], None] | None) -> None:
        import fcntl

        self._lock_fh = open(self.ws.root / ".lock", "a+")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX)
        recover(self.ws, self.conn)
        self.manifest = _load_manifest(self.ws.manifest_path)  # our own copy: we change it
        for leftover in (".tmp", ".trash"):
            shutil.rmtree(self.ws.root / leftover, ignore_errors=True)
        if (self.ws.root / ".dirty").exists():
            self._recover_legacy()
        self._backfill_cards()

    def _backfill_cards(self) -> None:
        """Cards for documents whose card is missing or older than the card reader (made from the
        first pages, committed with the next flush)."""
        from rlmcli.workspace import index

        missing = [d for d in index.cards_missing(self.conn()) if d in self.manifest["documents"]]
        for doc in missing:
            meta = self.ws.meta(doc)
            total = meta["pages"]
            first = (self.ws.read_page_file(doc, n, total) for n in range(1, total + 1))  # until FIRST_CHARS
            card = make_card(meta.get("name", doc), meta.get("metadata") or {},
                             [tuple(o) for o in meta.get("outline", [])], first)
            index.add_card(self.txn(), doc, meta.get("name", doc), card)
            if meta.get("card") != card:
                self.update_record(doc, card=card)
        if missing:
            self._changed = True

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

    def _recover_legacy(self) -> None:
        """A workspace left by rlm 0.1 after a crash: the doc directories are the truth."""
        from rlmcli.workspace import index

        docs: dict[str, dict[str, Any]] = {}
        for d in sorted(self.ws.docs_dir.iterdir()) if self.ws.docs_dir.is_dir() else []:
            try:
                meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
                docs[d.name] = _summary(meta)
            except (OSError, ValueError, KeyError):
                shutil.rmtree(d, ignore_errors=True)
        self.manifest["documents"] = docs
        conn = self.txn()
        indexed = index.indexed_docs(conn)
        for doc in set(indexed) - set(docs):
            index.remove_document(conn, doc)
        for doc, rec in docs.items():
            if indexed.get(doc) != rec["sha256"]:
                pages = [self.ws.read_page_file(doc, n, rec["pages"]) for n in range(1, rec["pages"] + 1)]
                meta = self.ws.meta(doc)
                headings = index.page_headings(pages, [(p, t) for _, p, t in meta.get("outline", [])])
                index.add_document(conn, doc, rec["sha256"], pages, headings)
        self._changed = True
        self.flush()
        (self.ws.root / ".dirty").unlink(missing_ok=True)

    def conn(self) -> Any:
        if self._conn is None:
            from rlmcli.workspace import index

            self._conn = index.connect(self.ws.index_path)
        return self._conn

    def txn(self) -> Any:
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
    def documents(self) -> dict[str, dict[str, Any]]:
        docs: dict[str, dict[str, Any]] = self.manifest["documents"]
        return docs

    def _lookups(self) -> tuple[dict[str, str], dict[str, str]]:
        # Rebuilt only when the documents change: O(1) lookups keep 10,000-file ingests linear.
        if self._by_source is None or self._by_sha is None:
            self._by_source = {rec["source"]: doc for doc, rec in self.documents.items()}
            self._by_sha = {rec["sha256"]: doc for doc, rec in self.documents.items() if rec["source"] != "-"}
        return self._by_source, self._by_sha

    def find_by_source(self, source: str) -> str | None:
        return self._lookups()[0].get(source)

    def find_by_sha(self, sha256: str) -> str | None:
        return self._lookups()[1].get(sha256)

    def _set_record(self, doc: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self.documents.pop(doc, None)
            self._by_source = self._by_sha = None
            return
        self.documents[doc] = record
        if self._by_source is not None and self._by_sha is not None:
            self._by_source[record["source"]] = doc
            if record["source"] != "-":  # stdin is its own document, never the original of a duplicate
                self._by_sha[record["sha256"]] = doc

    def _unique_id(self, name: str) -> str:
        base = slugify(name)
        stem, dot, ext = base.rpartition(".")
        if not dot or not stem or len(ext) > 8:
            stem, ext = base, ""
        doc, n = base, 2
        while doc in self.documents or self.ws.doc_dir(doc).exists():
            doc = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"  # report-2.pdf, not report.pdf-2
            n += 1
        return doc

    # ---- changes ------------------------------------------------------------------------
    def add(self, build: DocumentBuild, replace: str | None = None) -> str:
        """Stage one document (replacing doc `replace` when given); returns its id. It becomes
        visible, with its index rows, at the next flush.

        Pages are written and indexed before the token counts are awaited: on a small PDF the
        counting helper is still building its encoding when extraction ends."""
        from rlmcli.workspace import index

        doc = replace or self._unique_id(build.name)
        if isinstance(build.pages, PageSpool):
            tmp = build.pages.directory
        else:
            tmp = self.new_tmp()
            spool = PageSpool(tmp)
            try:
                for text in build.pages:
                    spool.add(text)
                spool.finish()
            except BaseException:
                spool.close()
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        try:
            conn = self.txn()
            conn.execute("SAVEPOINT add_document")  # undone if this document fails below
            try:
                headings = index.page_headings_iter(build.page_count, [(p, t) for _, p, t in build.outline])
                index.add_document(conn, doc, build.sha256, build.page_texts(), headings)
                card = make_card(build.name, build.metadata, build.outline, build.page_texts())
                index.add_card(conn, doc, build.name, card)
                meta = self._write_meta(tmp, doc, build, card)
            except BaseException:
                conn.execute("ROLLBACK TO add_document")
                raise
            finally:
                conn.execute("RELEASE add_document")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._ops = [op for op in self._ops if op[1] != doc]  # a later version wins
        self._ops.append(["put", doc, str(tmp)])
        if replace:
            self._set_record(doc, None)  # its old sha256 must stop pointing here
        self._set_record(doc, _summary(meta))
        self._changed = True
        self.maybe_flush()
        return doc

    def _write_meta(self, tmp: Path, doc: str, build: DocumentBuild, card: dict[str, str]) -> dict[str, Any]:
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

    def _current_meta(self, doc: str) -> dict[str, Any]:
        for op in reversed(self._ops):
            if op[1] == doc and op[0] == "put":
                return dict(json.loads((Path(op[2]) / "meta.json").read_text(encoding="utf-8")))
            if op[1] == doc and op[0] == "meta":
                return dict(json.loads(Path(op[2]).read_text(encoding="utf-8")))
        return self.ws.meta(doc)

    def update_record(self, doc: str, **changes: Any) -> None:
        """Change fields of a document's record (a new mtime, an alias), at the next flush."""
        meta = self._current_meta(doc)
        meta.update(changes)
        staged = self.ws.root / ".tmp" / f"{os.urandom(8).hex()}.meta.json"
        staged.parent.mkdir(exist_ok=True)
        staged.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        self._ops.append(["meta", doc, str(staged)])
        self._set_record(doc, _summary(meta))
        self._changed = True
        self.maybe_flush()

    def remove(self, doc: str) -> None:
        from rlmcli.workspace import index

        index.remove_document(self.txn(), doc)
        self._ops = [op for op in self._ops if op[1] != doc]
        self._ops.append(["delete", doc])
        self._set_record(doc, None)
        self._changed = True

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
        self.manifest.update(generation=generation, totals=_totals(self.documents), updated=time.time())
        journal = {"generation": generation, "ops": self._ops, "manifest": self.manifest}
        _write_durable(self.ws.root / JOURNAL, json.dumps(journal))
        conn = self.txn()
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
        conn.execute("COMMIT")  # the commit point
        self._in_txn = False
        _apply(self.ws, journal)
        self._ops, self._changed = [], False
        self._last_flush = time.monotonic()
        self._flush_cost = self._last_flush - started


JOURNAL = ".journal.json"


def _write_durable(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _apply(ws: Workspace, journal: dict[str, Any]) -> None:
    """Make a committed generation's renames and write its manifest. Idempotent: a journal
    applied halfway (a crash) is applied again from the start."""
    trash = ws.root / ".trash"
    for op in journal["ops"]:
        kind, doc = op[0], op[1]
        target = ws.doc_dir(doc)
        if kind == "put":
            staged = Path(op[2])
            if not staged.exists():
                continue  # renamed in already
            if target.exists():
                trash.mkdir(exist_ok=True)
                os.rename(target, trash / os.urandom(8).hex())
            ws.docs_dir.mkdir(exist_ok=True)
            os.rename(staged, target)
        elif kind == "delete":
            if target.exists():
                trash.mkdir(exist_ok=True)
                os.rename(target, trash / os.urandom(8).hex())
        elif kind == "meta":
            staged = Path(op[2])
            if staged.exists() and target.exists():
                os.replace(staged, target / "meta.json")
    indent = 1 if len(journal["manifest"].get("documents", {})) < 1000 else None  # readable while small
    write_atomic(ws.manifest_path, json.dumps(journal["manifest"], indent=indent))
    (ws.root / JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(trash, ignore_errors=True)


def recover(ws: Workspace, connect: Callable[[], Any] | None = None) -> str | None:
    """Settle an interrupted commit: roll a journal forward when the index committed its
    generation, else discard it. Call with the write lock held. Returns what was done."""
    path = ws.root / JOURNAL
    if not path.exists():
        return None
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
        generation = int(journal["generation"])
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)  # torn before it was complete: nothing was committed
        return "discarded"
    from rlmcli.workspace import index

    conn = connect() if connect is not None else index.connect(ws.index_path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    finally:
        if connect is None:
            conn.close()
    if row is not None and int(row[0]) == generation:
        _apply(ws, journal)
        return "rolled forward"
    path.unlink(missing_ok=True)
    return "discarded"


_SUMMARY_KEYS = ("name", "source", "aliases", "sha256", "size", "mtime_ns", "type", "extractor",
                 "pages", "chars", "tokens", "warnings")


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    summary = {k: meta[k] for k in _SUMMARY_KEYS}
    if meta.get("card"):
        summary["card"] = meta["card"]  # title, company, form, fiscal year: `rlm ls --json`, docs()
    if meta.get("ocr_pages"):
        summary["ocr_pages"] = meta["ocr_pages"]  # listed in the manifest: citations mark these pages
    if meta.get("extraction"):
        summary["extraction"] = meta["extraction"]  # a re-ingest with other options re-extracts
    return summary


def _outline_text(outline: list[tuple[int, int, str]]) -> str:
    return "".join(f"{'  ' * (level - 1)}{title}  (p. {page})\n" for level, page, title in outline)
