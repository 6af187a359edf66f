"""The commit journal: how a writer's staged changes become visible all at once, and how the next
opener settles a commit a killed writer left half-done.

A flush (writer.py) commits through `.journal.json`:

  1. the journal names the new generation, every rename to make and the new manifest (`write`);
  2. the index transaction commits, recording that generation in its `meta` table;
  3. the renames are made and the manifest replaced; the journal is removed (`apply`).

A writer killed before 2 leaves the previous generation (the journal is discarded, the index
never saw the change); killed after it, the next opener rolls the journal forward (`recover`).
Either way pages, manifest and index switch together.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlmcli.records import TextEnum
from rlmcli.workspace.store import write_atomic

if TYPE_CHECKING:
    from rlmcli.workspace.store import Workspace

JOURNAL = ".journal.json"


class OpKind(TextEnum):
    PUT = "put"  # rename a document built in .tmp/ into docs/ (replacing any version there)
    DELETE = "delete"  # move a document out of docs/
    META = "meta"  # replace a document's meta.json with a staged one


@dataclass(frozen=True)
class Op:
    """One change a commit makes to docs/; on disk as a list: ["put", doc, staged dir]."""

    kind: OpKind
    doc: str
    staged: str = ""  # the staged directory (put) or meta.json (meta)

    def to_json(self) -> list[str]:
        return [self.kind.value, self.doc, self.staged] if self.staged else [self.kind.value, self.doc]

    @classmethod
    def from_json(cls, raw: list[str]) -> Op:
        return cls(OpKind(raw[0]), str(raw[1]), str(raw[2]) if len(raw) > 2 else "")


@dataclass
class Journal:
    generation: int
    ops: list[Op] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    def write(self, root: Path) -> None:
        """Write the journal durably (fsync) before the index commits: it must survive a crash."""
        text = json.dumps({"generation": self.generation, "ops": [op.to_json() for op in self.ops],
                           "manifest": self.manifest})
        path = root / JOURNAL
        tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def read(cls, root: Path) -> Journal:
        """The journal in `root`; ValueError (or KeyError, TypeError) when it was torn."""
        raw = json.loads((root / JOURNAL).read_text(encoding="utf-8"))
        return cls(int(raw["generation"]), [Op.from_json(op) for op in raw["ops"]], dict(raw["manifest"]))

    def apply(self, ws: Workspace) -> None:
        """Make a committed generation's renames and write its manifest. Idempotent: a journal
        applied halfway (a crash) is applied again from the start."""
        trash = ws.root / ".trash"
        for op in self.ops:
            target = ws.doc_dir(op.doc)
            if op.kind is OpKind.PUT:
                staged = Path(op.staged)
                if not staged.exists():
                    continue  # renamed in already
                if target.exists():
                    trash.mkdir(exist_ok=True)
                    os.rename(target, trash / os.urandom(8).hex())
                ws.docs_dir.mkdir(exist_ok=True)
                os.rename(staged, target)
            elif op.kind is OpKind.DELETE:
                if target.exists():
                    trash.mkdir(exist_ok=True)
                    os.rename(target, trash / os.urandom(8).hex())
            else:
                staged = Path(op.staged)
                if staged.exists() and target.exists():
                    os.replace(staged, target / "meta.json")
        indent = 1 if len(self.manifest.get("documents", {})) < 1000 else None  # readable while small
        write_atomic(ws.manifest_path, json.dumps(self.manifest, indent=indent))
        (ws.root / JOURNAL).unlink(missing_ok=True)
        shutil.rmtree(trash, ignore_errors=True)


def recover(ws: Workspace, connect: Callable[[], sqlite3.Connection] | None = None) -> str | None:
    """Settle an interrupted commit: roll a journal forward when the index committed its
    generation, else discard it. Call with the write lock held. Returns what was done."""
    path = ws.root / JOURNAL
    if not path.exists():
        return None
    try:
        journal = Journal.read(ws.root)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        path.unlink(missing_ok=True)  # torn before it was complete: nothing was committed
        return "discarded"
    from rlmcli.workspace import index

    conn = connect() if connect is not None else index.connect(ws.index_path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    finally:
        if connect is None:
            conn.close()
    if row is not None and int(row[0]) == journal.generation:
        journal.apply(ws)
        return "rolled forward"
    path.unlink(missing_ok=True)
    return "discarded"
