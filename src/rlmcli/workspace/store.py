"""Workspace layout on disk, its manifest, the write lock and atomic document commits.

    <root>/manifest.json            documents, totals, format version (a summary of meta.json files)
    <root>/docs/<id>/meta.json      the truth about one document
    <root>/docs/<id>/outline.txt    headings / bookmarks with page numbers
    <root>/docs/<id>/pages/0001.txt one file per page or section
    <root>/index.sqlite             FTS5 over page passages

A document is built in `.tmp/` and renamed into `docs/`, so a reader never sees half of one.
Writers hold an exclusive `flock` on `.lock`. While a writer has unflushed changes, `.dirty`
exists; a writer that finds it (after a crash) rebuilds the manifest from the meta.json files
and re-indexes documents whose index rows do not match.
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
from rlmcli.workspace.reader import FORMAT_VERSION, MANIFEST, WorkspaceReader, page_name, slugify

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
    pages: list[str]
    tokens: list[int] | Callable[[], list[int]]  # a callable while the token helper is counting
    outline: list[tuple[int, int, str]] = field(default_factory=list)  # (level, page, title)
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def page_tokens(self) -> list[int]:
        if callable(self.tokens):
            self.tokens = self.tokens()
        return self.tokens


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
        """A document id from its id, file name (with or without extension), slug or unique prefix."""
        return self.reader.resolve(name)

    def meta(self, doc: str) -> dict[str, Any]:
        return self.reader.meta(doc)

    def page_path(self, doc: str, number: int) -> Path:
        return Path(self.reader.page_file(doc, number))

    def read_page(self, doc: str, number: int) -> str:
        return self.reader.read_page(doc, number)

    def touch(self) -> None:
        """Record a use, for `rlm workspaces` and `--prune`."""
        with contextlib.suppress(OSError):
            (self.root / ".last_used").touch()

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
    """Changes to one workspace, under its lock. Flushes the manifest and index in batches."""

    FLUSH_EVERY = 2.0  # seconds; bounds both the work lost in a crash and manifest rewrites

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._lock_fh: Any = None
        self._conn: Any = None
        self._dirty = False
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
        self.manifest = _load_manifest(self.ws.manifest_path)  # our own copy: we change it
        for leftover in (".tmp", ".trash"):
            shutil.rmtree(self.ws.root / leftover, ignore_errors=True)
        if (self.ws.root / ".dirty").exists():
            self._recover()

    def release(self) -> None:
        # Whatever is still in .tmp was never committed (a failed write, say).
        shutil.rmtree(self.ws.root / ".tmp", ignore_errors=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fh is not None:
            self._lock_fh.close()  # closing drops the flock
            self._lock_fh = None

    def _recover(self) -> None:
        """After a crash: the doc directories are the truth; rebuild the rest from them."""
        from rlmcli.workspace import index

        docs: dict[str, dict[str, Any]] = {}
        for d in sorted(self.ws.docs_dir.iterdir()) if self.ws.docs_dir.is_dir() else []:
            try:
                meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
                docs[d.name] = _summary(meta)
            except (OSError, ValueError, KeyError):
                shutil.rmtree(d, ignore_errors=True)
        self.manifest["documents"] = docs
        conn = self.conn()
        indexed = index.indexed_docs(conn)
        self._mark_dirty()
        for doc in set(indexed) - set(docs):
            index.remove_document(conn, doc)
        for doc, rec in docs.items():
            if indexed.get(doc) != rec["sha256"]:
                pages = self._read_pages(doc, rec["pages"])
                meta = self.ws.meta(doc)
                headings = index.page_headings(pages, [(p, t) for _, p, t in meta.get("outline", [])])
                index.add_document(conn, doc, rec["sha256"], pages, headings)
        self.flush()

    def _read_pages(self, doc: str, total: int) -> list[str]:
        pages_dir = self.ws.doc_dir(doc) / "pages"
        return [(pages_dir / page_name(n, total)).read_text(encoding="utf-8") for n in range(1, total + 1)]

    def conn(self) -> Any:
        if self._conn is None:
            from rlmcli.workspace import index

            self._conn = index.connect(self.ws.index_path)
        return self._conn

    def _mark_dirty(self) -> None:
        if not self._dirty:
            (self.ws.root / ".dirty").touch()  # may already exist when recovering
            self._dirty = True
            self.conn().execute("BEGIN")

    # ---- queries ------------------------------------------------------------------------
    @property
    def documents(self) -> dict[str, dict[str, Any]]:
        docs: dict[str, dict[str, Any]] = self.manifest["documents"]
        return docs

    def _lookups(self) -> tuple[dict[str, str], dict[str, str]]:
        # Rebuilt only when the documents change: O(1) lookups keep 10,000-file ingests linear.
        if self._by_source is None or self._by_sha is None:
            self._by_source = {rec["source"]: doc for doc, rec in self.documents.items()}
            self._by_sha = {rec["sha256"]: doc for doc, rec in self.documents.items()}
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
        """Commit one document (replacing doc `replace` when given); returns its id.

        Pages are written and indexed before the token counts are awaited: on a small PDF the
        counting helper is still building its encoding when extraction ends."""
        from rlmcli.workspace import index

        doc = replace or self._unique_id(build.name)
        tmp = self.ws.root / ".tmp" / os.urandom(8).hex()
        pages_dir = tmp / "pages"
        try:
            os.mkdir(tmp)
        except FileNotFoundError:
            os.mkdir(tmp.parent)
            os.mkdir(tmp)
        try:
            os.mkdir(pages_dir)
            total = len(build.pages)
            for number, text in enumerate(build.pages, start=1):
                with open(pages_dir / page_name(number, total), "w", encoding="utf-8") as fh:
                    fh.write(text)
            self._mark_dirty()
            conn = self.conn()
            conn.execute("SAVEPOINT add_document")  # undone if this document fails below
            try:
                headings = index.page_headings(build.pages, [(p, t) for _, p, t in build.outline])
                index.add_document(conn, doc, build.sha256, build.pages, headings)
                meta = self._write_meta(tmp, doc, build)
                target = self.ws.doc_dir(doc)
                trash = None
                if target.exists():
                    trash = self.ws.root / ".trash" / os.urandom(8).hex()
                    trash.parent.mkdir(exist_ok=True)
                    os.rename(target, trash)
                try:
                    os.rename(tmp, target)
                except OSError:
                    if trash is not None:
                        os.rename(trash, target)  # the old version stays in place
                    raise
            except BaseException:
                conn.execute("ROLLBACK TO add_document")
                raise
            finally:
                conn.execute("RELEASE add_document")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if replace:
            self._set_record(doc, None)  # its old sha256 must stop pointing here
        self._set_record(doc, _summary(meta))
        self.maybe_flush()
        return doc

    def _write_meta(self, tmp: Path, doc: str, build: DocumentBuild) -> dict[str, Any]:
        tokens = build.page_tokens()
        meta = {
            "id": doc, "name": build.name, "source": build.source, "aliases": [],
            "sha256": build.sha256, "size": build.size, "mtime_ns": build.mtime_ns,
            "type": build.type, "extractor": build.extractor, "pages": len(build.pages),
            "chars": sum(len(p) for p in build.pages), "tokens": sum(tokens),
            "page_tokens": tokens, "warnings": build.warnings, "metadata": build.metadata,
            "outline": [list(o) for o in build.outline], "ingested_at": time.time(),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if build.outline:
            (tmp / "outline.txt").write_text(_outline_text(build.outline), encoding="utf-8")
        return meta

    def update_record(self, doc: str, **changes: Any) -> None:
        """Change fields of a document's record (a new mtime, an alias) in meta and manifest."""
        meta = self.ws.meta(doc)
        meta.update(changes)
        self._mark_dirty()
        write_atomic(self.ws.doc_dir(doc) / "meta.json", json.dumps(meta, indent=1))
        self._set_record(doc, _summary(meta))
        self.maybe_flush()

    def remove(self, doc: str) -> None:
        from rlmcli.workspace import index

        self._mark_dirty()
        trash = self.ws.root / ".trash" / os.urandom(8).hex()
        trash.parent.mkdir(exist_ok=True)
        os.rename(self.ws.doc_dir(doc), trash)
        self._set_record(doc, None)
        index.remove_document(self.conn(), doc)
        self.flush()

    def maybe_flush(self) -> None:
        # A big manifest takes a while to write: flush less often as it grows.
        if time.monotonic() - self._last_flush >= max(self.FLUSH_EVERY, 10 * self._flush_cost):
            self.flush()

    def flush(self) -> None:
        if not self._dirty:
            return
        started = time.monotonic()
        self.conn().execute("COMMIT")
        self.manifest["totals"] = _totals(self.documents)
        self.manifest["updated"] = time.time()
        indent = 1 if len(self.documents) < 1000 else None  # readable while it is small
        write_atomic(self.ws.manifest_path, json.dumps(self.manifest, indent=indent))
        shutil.rmtree(self.ws.root / ".trash", ignore_errors=True)
        (self.ws.root / ".dirty").unlink(missing_ok=True)
        self._dirty = False
        self._last_flush = time.monotonic()
        self._flush_cost = self._last_flush - started


_SUMMARY_KEYS = ("name", "source", "aliases", "sha256", "size", "mtime_ns", "type", "extractor",
                 "pages", "chars", "tokens", "warnings")


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in _SUMMARY_KEYS}


def _outline_text(outline: list[tuple[int, int, str]]) -> str:
    return "".join(f"{'  ' * (level - 1)}{title}  (p. {page})\n" for level, page, title in outline)
