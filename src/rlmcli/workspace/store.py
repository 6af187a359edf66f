"""A workspace directory: its layout, opening and creating it, and reading through the one reader.

    <root>/manifest.json            documents, totals, generation (a summary of meta.json files)
    <root>/docs/<id>/meta.json      the truth about one document
    <root>/docs/<id>/outline.txt    headings / bookmarks with page numbers
    <root>/docs/<id>/pages/0001.txt one file per page or section
    <root>/index.sqlite             FTS5 over page passages

Reading needs no lock. Writing goes through `Workspace.writer()` (writer.py: the lock, one open
transaction, adding and removing documents), whose flushes commit through a journal
(journal.py: the commit protocol, and settling a commit a killed writer left half-done).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlmcli.errors import WorkspaceError
from rlmcli.records import DocumentRecord
from rlmcli.workspace.reader import FORMAT_VERSION, MANIFEST, WorkspaceReader

if TYPE_CHECKING:
    from rlmcli.workspace.writer import WorkspaceWriter

__all__ = ["Workspace", "write_atomic"]

NO_TOTALS = {"documents": 0, "pages": 0, "chars": 0, "tokens": 0}


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


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

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

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
                        "documents": {}, "totals": dict(NO_TOTALS)}
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
        """The manifest as on disk (cached until the file changes): read it, do not change it."""
        return self.reader.manifest()

    def documents(self) -> dict[str, DocumentRecord]:
        return self.reader.records

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
            if rec.source == key or key in rec.aliases:
                return doc
        if not by_content:
            return None
        try:
            from rlmcli.workspace.sources import hash_file

            sha = hash_file(path)
        except OSError:
            return None
        return next((doc for doc, rec in docs.items() if rec.sha256 == sha), None)

    def meta(self, doc: str) -> dict[str, Any]:
        return self.reader.meta(doc)

    def read_page(self, doc: str, number: int) -> str:
        return self.reader.read_page(doc, number)

    # ---- writing ----------------------------------------------------------------------------
    def settle(self) -> None:
        """Finish or discard a commit a killed writer left half-done, when no writer is active;
        wait for one that is (its commit takes milliseconds)."""
        from rlmcli.workspace.journal import JOURNAL, recover

        if not (self.root / JOURNAL).exists():
            return
        import fcntl

        try:
            fh = open(self.lock_path, "a+")
        except OSError:
            return  # a read-only workspace: nothing we could repair
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            recover(self)

    @contextlib.contextmanager
    def writer(self, on_wait: Callable[[], None] | None = None) -> Iterator[WorkspaceWriter]:
        """The workspace's one writer, under its lock; what it staged is committed when the block ends."""
        from rlmcli.workspace.writer import WorkspaceWriter

        w = WorkspaceWriter(self)
        w.acquire(on_wait)
        try:
            yield w
            w.flush()
        finally:
            w.release()

    def touch(self) -> None:
        """Record a use, for `rlm workspaces` and `--prune` (registry.py)."""
        from rlmcli.workspace.registry import mark_used

        mark_used(self.root)
