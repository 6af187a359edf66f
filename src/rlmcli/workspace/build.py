"""One source -> a DocumentBuild: extracted pages and their token counts, not yet committed.

The ingest loop (ingest.py) calls `build_document` here, or the Ray builder (ingest_ray.py) calls
it on a worker; both then hand the build to the workspace writer (writer.py). A long document's
pages go to a PageSpool on disk as they are extracted, never all in memory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rlmcli.errors import BinaryFile, ExtractError
from rlmcli.records import DocumentRecord
from rlmcli.tokens import TokenCounter
from rlmcli.workspace.reader import PAGE_SEP, TEXT, TEXT_INDEX, TextIndex, page_name
from rlmcli.workspace.sources import Source, hash_file


class Spooler(Protocol):
    """Where a streamed document's pages are spooled while it is built (a WorkspaceWriter, or a
    Ray worker's scratch): the builder needs nothing else of the writer."""

    def new_tmp(self) -> Path: ...

MAX_TEXT_BYTES = 4 << 30  # text is streamed page by page; beyond this it is surely not a document
MAX_HTML_BYTES = 64 << 20  # HTML is parsed whole
TOKEN_BATCH = 512  # pages of a streamed document counted at a time


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
    attachments: list[Source] = field(default_factory=list)  # found inside this one (a mail's files)
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

    @classmethod
    def of(cls, directory: Path, pages: Iterator[str] | list[str],
           on_page: Callable[[int], None] | None = None) -> PageSpool:
        """A finished spool of these pages; the directory is removed if writing them fails."""
        spool = cls(directory, on_page)
        try:
            for text in pages:
                spool.add(text)
            spool.finish()
        except BaseException:
            spool.close()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return spool


_SEP_BYTES = PAGE_SEP.encode()


class Progress(Protocol):
    def start(self, total_files: int) -> None: ...
    def more(self, files: int) -> None: ...  # found inside one: a mail's attachments, an archive's members
    def file_started(self, name: str) -> None: ...
    def file_done(self, name: str, pages: int) -> None: ...
    def page_done(self, name: str, pages: int, total: int = 0) -> None: ...


def source_sha(source: Source) -> str:
    if source.data is not None:
        return hashlib.sha256(source.data).hexdigest()
    assert source.path is not None
    return hash_file(source.path)


def source_stat(source: Source) -> tuple[int, int]:
    """(size, mtime_ns): what decides, without reading, that a file is unchanged."""
    if source.data is not None:
        return len(source.data), 0
    assert source.path is not None
    st = os.stat(source.path)
    return st.st_size, st.st_mtime_ns


def _spool(writer: Spooler, pages: Iterator[str], counter: TokenCounter,
           on_page: Callable[[int], None] | None) -> tuple[PageSpool, list[int]]:
    """Write streamed pages to disk as they come, counting their tokens in batches."""
    spool = PageSpool(writer.new_tmp(), on_page)
    tokens: list[int] = []
    batch: list[str] = []
    try:
        for text in pages:
            spool.add(text)
            batch.append(text)
            if len(batch) >= TOKEN_BATCH:
                tokens.extend(counter.count(batch))
                batch = []
        if batch:
            tokens.extend(counter.count(batch))
        spool.finish()
    except BaseException:
        spool.close()
        shutil.rmtree(spool.directory, ignore_errors=True)
        raise
    return spool, tokens


@dataclass
class IngestOptions:
    ocr: str = "auto"  # auto | always | never: OCR for PDF pages without a usable text layer
    follow_symlinks: bool = False
    as_text: bool = False  # every source is plain text, whatever its bytes look like (rlm_query's texts)


OCR_KINDS = {"pdf", "eml", "mbox", "msg"}  # PDFs, and mail whose attachments may be PDFs


def extraction_key(kind: str, options: IngestOptions) -> str:
    """The options that change a document's extracted text, as stored with it: a re-ingest whose
    options give another key extracts again ('unchanged' means same bytes and same options)."""
    return f"ocr={options.ocr}" if kind in OCR_KINDS else ""


def stale(record: DocumentRecord, options: IngestOptions) -> bool:
    """Whether a committed document was extracted with options other than these (a record
    without the field was extracted with the defaults)."""
    stored = record.extraction or extraction_key(record.type, IngestOptions())
    return stored != extraction_key(record.type, options)


Builder = Callable[..., DocumentBuild]  # build_document's signature: extracts one source (here, or on Ray)
MAX_ATTACHMENT_DEPTH = 2  # a mail attached to a mail attached to a mail: its attachments stop here


def build_document(source: Source, sha: str, size: int, mtime_ns: int, counter: TokenCounter, writer: Spooler,
           progress: Progress | None = None, options: IngestOptions | None = None) -> DocumentBuild:
    from rlmcli.workspace.extract import Options, detect_type, extract

    options = options or IngestOptions()
    path = source.path or Path(source.name)
    if source.data is not None:
        head = source.data[:8192]
    else:
        with open(path, "rb") as fh:
            head = fh.read(8192)
    if size == 0:
        raise ExtractError("empty file (0 bytes)")
    kind = "text" if options.as_text else detect_type(path, head, source.data)
    if kind == "binary":
        raise BinaryFile("binary file: not a supported document type")
    if kind == "text" and size > MAX_TEXT_BYTES:
        raise ExtractError(f"text file too large ({size >> 20:,} MB; the limit is {MAX_TEXT_BYTES >> 20:,} MB)")
    if kind == "html" and size > MAX_HTML_BYTES:
        raise ExtractError(f"HTML file too large ({size >> 20:,} MB; the limit is {MAX_HTML_BYTES >> 20} MB: "
                           "convert it to text first)")
    counter.start()  # the encoding loads in a helper process while we extract
    on_pdf_page = (lambda done, total: progress.page_done(source.name, done, total)) if progress is not None else None
    result = extract(path, kind, source.data, Options(ocr=options.ocr, on_page=on_pdf_page, explicit=source.explicit))
    pages: list[str] | PageSpool
    tokens: list[int] | Callable[[], list[int]]
    if isinstance(result.pages, list):
        pages, tokens = result.pages, counter.submit(result.pages).result
    else:
        on_page = (lambda n: progress.page_done(source.name, n)) if progress is not None else None
        pages, tokens = _spool(writer, result.pages, counter, on_page)
    build = DocumentBuild(
        name=source.name,
        source=source.key,
        sha256=sha, size=size, mtime_ns=mtime_ns, type=kind, extractor=result.extractor,
        pages=pages, tokens=tokens,
        outline=[(o.level, o.page, o.title) for o in result.outline],
        warnings=result.warnings, metadata=result.metadata, extra=dict(result.extra),
        extraction=extraction_key(kind, options),
    )
    if source.depth < MAX_ATTACHMENT_DEPTH:
        # An attachment or an archive's member is like a file found in a folder: a binary one is
        # skipped quietly and an unreadable one listed, without failing the ingest.
        build.attachments = [Source(f"{source.name}/{a.name}", None, data=a.data, key=f"{source.key}#{a.name}",
                                    depth=source.depth + 1, explicit=False) for a in result.attachments]
    elif result.attachments:
        build.warnings.append(f"{len(result.attachments)} attachment(s) not ingested: nested deeper than "
                              f"{MAX_ATTACHMENT_DEPTH} levels")
    return build
