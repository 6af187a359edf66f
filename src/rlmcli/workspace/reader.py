"""Reading a workspace: the manifest, document names, pages. The one reader for everyone.

The CLI, citations, search and the sandbox child's helpers all resolve names and read pages
here, so a name that works in `rlm show` works in `read()` too. Standard library only: the
sandbox child imports this module at every start.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rlmcli.errors import WorkspaceError

if TYPE_CHECKING:
    from rlmcli.records import DocumentRecord

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DOCS = "docs"
INDEX = "index.sqlite"
# Each document's pages also sit end to end in one file, separated by PAGE_SEP, with the byte and
# character offset of every page in TEXT_INDEX: grep scans it through mmap a slice at a time, and
# a large `context` slices it, so neither holds the corpus in memory.
TEXT = "text.txt"
TEXT_INDEX = "text.idx"
PAGE_SEP = "\n\x00\n"
# The longest document name or glob resolved, and the most names in one list: a name is matched
# against every document (and a glob's translation is quadratic in its brackets), so a megabyte
# of '[' would keep whoever asked busy for hours.
NAME_CHARS = 1_000
NAMES = 1_000


class TextIndex:
    """Where each page of a document's text.txt starts: `bytes[i]` and `chars[i]` for page i+1,
    and one more entry for the end."""

    __slots__ = ("bytes", "chars")

    def __init__(self, byte_starts: list[int], char_starts: list[int]) -> None:
        self.bytes, self.chars = byte_starts, char_starts

    @property
    def pages(self) -> int:
        return len(self.bytes) - 1

    def byte_span(self, page: int) -> tuple[int, int]:
        """[start, end) of page `page` (1-based) in text.txt, without the separator after it."""
        end = self.bytes[page] - (len(PAGE_SEP) if page < self.pages else 0)
        return self.bytes[page - 1], end

    def char_span(self, page: int) -> tuple[int, int]:
        end = self.chars[page] - (len(PAGE_SEP) if page < self.pages else 0)
        return self.chars[page - 1], end

    def to_bytes(self) -> bytes:
        from array import array

        return array("Q", [len(self.bytes), *self.bytes, *self.chars]).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> TextIndex:
        from array import array

        values = array("Q")
        values.frombytes(data[: len(data) - len(data) % 8])
        n = values[0] if values else 0
        if n < 1 or len(values) != 1 + 2 * n:
            raise ValueError("truncated text index")
        return cls(values[1:1 + n].tolist(), values[1 + n:].tolist())


class NoSuchDocument(WorkspaceError, LookupError):
    """A document name that matches nothing, or more than one document."""


class NoSuchPage(WorkspaceError, IndexError):
    """A page number outside a document."""


def slugify(name: str) -> str:
    """A readable, filesystem-safe id: 'My Contract (v2).PDF' -> 'my-contract-v2.pdf',
    'Übersicht.docx' -> 'ubersicht.docx'; letters of other scripts stay ('договор.pdf')."""

    def ascii_form(c: str) -> str:  # 'é' -> 'e', 'ﬁ' -> 'fi'; 'й' and '合' stay themselves
        plain = "".join(p for p in unicodedata.normalize("NFKD", c) if not unicodedata.combining(p))
        return plain if plain.isascii() else c

    text = "".join(ascii_form(c) for c in unicodedata.normalize("NFC", name)).lower()
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in text)
    slug = re.sub(r"-*\.-*", ".", re.sub(r"-{2,}", "-", slug)).strip("-.") or "doc"
    slug = slug[:80]
    while len(slug.encode()) > 200:  # file names hold 255 bytes, and a -2 suffix may follow
        slug = slug[:-1]
    return slug


def page_name(number: int, total: int) -> str:
    """The file name of page `number` of a document with `total` pages: 0001.txt, 00001.txt."""
    return f"{number:0{max(4, len(str(total)))}d}.txt"


def read_text(path: str) -> str:
    """A page file's text, as open(path, encoding='utf-8').read() gives it, at half the cost
    (no buffered text wrapper): the first grep reads every page of the workspace."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)
        if len(data) != size:  # a short read, or the file is not what stat said: read to the end
            parts = [data]
            while more := os.read(fd, 1 << 20):
                parts.append(more)
            data = b"".join(parts)
    finally:
        os.close(fd)
    text = data.decode("utf-8")
    if "\r" in text:  # universal newlines, like text mode
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _bounded(name: str) -> str:
    if len(name) > NAME_CHARS:
        raise NoSuchDocument(f"a document name or pattern of {len(name):,} characters ({_quoted(name)}): "
                             f"names and globs are at most {NAME_CHARS:,}")
    return name


def _quoted(name: str) -> str:
    """A name as error messages show it: quoted, and cut when it is long."""
    return repr(name if len(name) <= 80 else name[:60] + "...")


def _stem(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return stem if dot and stem and 0 < len(ext) <= 8 and " " not in ext else name


class WorkspaceReader:
    """Read-only access to a workspace directory. The manifest is cached and re-read when the
    file changes (a stat per call), so a long-lived reader sees documents added meanwhile."""

    def __init__(self, root: str | os.PathLike[str] = ".") -> None:
        self.root = os.fspath(root)
        self._manifest: dict[str, Any] | None = None
        self._records: dict[str, DocumentRecord] | None = None
        self._stamp: tuple[int, int] | None = None
        self._resolved: dict[str, str] = {}
        self._lines: dict[str, list[int] | None] = {}

    # ---- the manifest ---------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def exists(self) -> bool:
        return os.path.isfile(self.path(MANIFEST))

    def manifest(self) -> dict[str, Any]:
        path = self.path(MANIFEST)
        try:
            st = os.stat(path)
        except OSError:
            raise WorkspaceError(f"no rlm workspace at {self.root} (create one with `rlm ingest FILE -w {self.root}`)") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._manifest is None or stamp != self._stamp:
            try:
                with open(path, encoding="utf-8") as fh:
                    data = json.load(fh)
            except (OSError, ValueError) as exc:
                raise WorkspaceError(f"{path}: unreadable manifest ({exc})") from None
            if not isinstance(data, dict) or not isinstance(data.get("documents"), dict):
                raise WorkspaceError(f"{path}: not an rlm manifest")
            if data.get("format", 0) > FORMAT_VERSION:
                raise WorkspaceError(f"{self.root}: made by a newer rlm (format {data['format']})")
            self._manifest, self._stamp, self._resolved, self._lines, self._records = data, stamp, {}, {}, None
        return self._manifest

    @property
    def documents(self) -> dict[str, dict[str, Any]]:
        """The documents as manifest.json has them (what model code sees in the sandbox)."""
        docs: dict[str, dict[str, Any]] = self.manifest()["documents"]
        return docs

    @property
    def records(self) -> dict[str, DocumentRecord]:
        """The documents as typed records, read once per version of the manifest (the parent's
        view; the sandbox child uses `documents` and need not import the records)."""
        docs = self.documents
        if self._records is None:
            from rlmcli.records import DocumentRecord

            try:
                self._records = {doc: DocumentRecord.from_json(rec) for doc, rec in docs.items()}
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise WorkspaceError(f"{self.path(MANIFEST)}: a damaged document entry ({exc!r})") from None
        return self._records

    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = self.manifest().get("totals", {})
        return totals

    # ---- names ----------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """A document id from what a person or a model calls it.

        Tried in order, the first rule with exactly one match wins: the id; the file name (or
        an alias's file name); the same ignoring case; the file name or id without its
        extension; the slug of the name; a unique prefix of an id or file name. No match, or
        several, raises NoSuchDocument naming the close matches."""
        name = _bounded(str(name))
        docs = self.documents
        if name in docs:
            return name
        hit = self._resolved.get(name)
        if hit is not None and hit in docs:
            return hit
        found = self._resolve(name, docs)
        self._resolved[name] = found
        return found

    def select(self, pattern: str | list[str] | tuple[str, ...]) -> list[str]:
        """Document ids for a name, a glob over ids and file names ('r-*.pdf', '*2023*'; any
        case), or a list of either."""
        if isinstance(pattern, (list, tuple)):
            if len(pattern) > NAMES:
                raise NoSuchDocument(f"a list of {len(pattern):,} document names: at most {NAMES:,} at once")
            return list(dict.fromkeys(d for p in pattern for d in self.select(p)))
        pattern = _bounded(str(pattern))
        try:
            return [self.resolve(pattern)]  # a name first: 'Notes [final].docx' is a name, not a glob
        except NoSuchDocument:
            if not any(c in pattern for c in "*?["):
                raise
        import fnmatch

        wanted = pattern.lower()
        found = [doc for doc, rec in self.documents.items()
                 if fnmatch.fnmatchcase(doc.lower(), wanted) or fnmatch.fnmatchcase(str(rec.get("name") or "").lower(), wanted)]
        if not found:
            raise NoSuchDocument(f"no document matches {_quoted(pattern)} ({len(self.documents)} documents; see ls('docs'))")
        return found

    def _resolve(self, name: str, docs: dict[str, dict[str, Any]]) -> str:
        wanted = name.strip()
        lower = wanted.lower()
        slug = slugify(wanted)

        def names_of(doc: str, rec: dict[str, Any]) -> list[str]:
            names = [str(rec.get("name") or doc), os.path.basename(str(rec.get("source") or ""))]
            names += [os.path.basename(str(a)) for a in rec.get("aliases") or []]
            return [n for n in names if n and n != "-"]

        table = [(doc, names_of(doc, rec)) for doc, rec in docs.items()]
        rules: tuple[Callable[[str, list[str]], bool], ...] = (
            lambda doc, names: wanted in names,
            lambda doc, names: lower == doc.lower() or lower in (n.lower() for n in names),
            lambda doc, names: lower == _stem(doc).lower() or lower in (_stem(n).lower() for n in names),
            lambda doc, names: slug == doc or slug == _stem(doc) or slug in (slugify(n) for n in names),
            lambda doc, names: any(n.lower().endswith("/" + lower) for n in names),  # src/main.py in repo/src/main.py
            lambda doc, names: doc.startswith(slug) or any(n.lower().startswith(lower) for n in names),
        )
        for rule in rules:
            matches = sorted({doc for doc, names in table if rule(doc, names)})
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                shown = ", ".join(matches[:10]) + (f" and {len(matches) - 10} more" if len(matches) > 10 else "")
                raise NoSuchDocument(f"{_quoted(name)} matches several documents: {shown}")
        raise NoSuchDocument(self._not_found(name, table))

    def _not_found(self, name: str, table: list[tuple[str, list[str]]]) -> str:
        import difflib

        if not table:
            return f"no document {_quoted(name)}: the workspace is empty"
        candidates: dict[str, str] = {}
        for doc, names in table:
            for n in [doc, *names]:
                candidates.setdefault(n.lower(), doc)
        close = difflib.get_close_matches(name.lower(), list(candidates), n=5, cutoff=0.5)
        if close:
            near = list(dict.fromkeys(candidates[c] for c in close))
            return f"no document {_quoted(name)}; did you mean {', '.join(near)}?"
        some = [doc for doc, _ in table[:10]]
        more = f" and {len(table) - 10} more" if len(table) > 10 else ""
        return f"no document {_quoted(name)}; documents are: {', '.join(some)}{more}"

    # ---- pages ----------------------------------------------------------------------------
    def pages(self, doc: str) -> int:
        return int(self.documents[doc]["pages"])

    def page_file(self, doc: str, number: int) -> str:
        """The path of page `number` (1-based) of document id `doc`, checked against its range."""
        total = self.pages(doc)
        if isinstance(number, bool) or not isinstance(number, int):
            raise TypeError(f"a page number is an int, not {type(number).__name__}")
        if not 1 <= number <= total:
            raise NoSuchPage(f"{doc} has pages 1-{total}; there is no page {number}")
        return self.path(DOCS, doc, "pages", page_name(number, total))

    def read_page(self, doc: str, number: int) -> str:
        return read_text(self.page_file(doc, number))

    def text_index(self, doc: str) -> TextIndex | None:
        """The page offsets of the document's text.txt; None for a workspace made before it existed."""
        try:
            with open(self.path(DOCS, doc, TEXT_INDEX), "rb") as fh:
                return TextIndex.from_bytes(fh.read())
        except (OSError, ValueError):
            return None

    def outline(self, doc: str) -> str | None:
        try:
            return read_text(self.path(DOCS, doc, "outline.txt"))
        except OSError:
            return None

    def meta(self, doc: str) -> dict[str, Any]:
        with open(self.path(DOCS, doc, "meta.json"), encoding="utf-8") as fh:
            meta: dict[str, Any] = json.load(fh)
        return meta

    def page_lines(self, doc: str) -> list[int] | None:
        """For code and text files: the line of the file each page starts at (None otherwise)."""
        self.manifest()  # drops the cache when the workspace changed
        if doc not in self._lines:
            starts = self.meta(doc).get("page_lines")
            self._lines[doc] = starts if isinstance(starts, list) else None
        return self._lines[doc]

    def locate(self, doc: str, line: int) -> tuple[int, int]:
        """(page, line on that page) of line `line` of a code file; NoSuchPage beyond its end."""
        import bisect

        starts = self.page_lines(doc)
        if not starts:
            raise NoSuchPage(f"{doc} is not a line-numbered file: cite it by page, like [{doc} p.1]")
        page = bisect.bisect_right(starts, line)
        if line < 1 or page < 1:
            raise NoSuchPage(f"{doc} has no line {line}")
        return page, line - starts[page - 1] + 1
