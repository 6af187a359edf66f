"""One source -> a DocumentBuild: extracted pages and their token counts, not yet committed.

The ingest loop (ingest.py) calls `build_document` here, or the Ray builder (ingest_ray.py) calls
it on a worker; both then hand the build to the workspace writer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rlmcli.errors import ExtractError
from rlmcli.tokens import TokenCounter
from rlmcli.workspace.sources import Source
from rlmcli.workspace.store import DocumentBuild, PageSpool, WorkspaceWriter

MAX_TEXT_BYTES = 4 << 30  # text is streamed page by page; beyond this it is surely not a document
MAX_HTML_BYTES = 64 << 20  # HTML is parsed whole
TOKEN_BATCH = 512  # pages of a streamed document counted at a time


class Progress(Protocol):
    def start(self, total_files: int) -> None: ...
    def more(self, files: int) -> None: ...  # found inside one: a mail's attachments, an archive's members
    def file_started(self, name: str) -> None: ...
    def file_done(self, name: str, pages: int) -> None: ...
    def page_done(self, name: str, pages: int, total: int = 0) -> None: ...


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


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


def _spool(writer: WorkspaceWriter, pages: Iterator[str], counter: TokenCounter,
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


def stale(record: dict[str, Any], options: IngestOptions) -> bool:
    """Whether a committed document was extracted with options other than these (a record
    without the field was extracted with the defaults)."""
    kind = str(record.get("type", ""))
    stored = record.get("extraction", extraction_key(kind, IngestOptions()))
    return bool(stored != extraction_key(kind, options))


Builder = Callable[..., DocumentBuild]  # build_document's signature: extracts one source (here, or on Ray)
MAX_ATTACHMENT_DEPTH = 2  # a mail attached to a mail attached to a mail: its attachments stop here


def build_document(source: Source, sha: str, size: int, mtime_ns: int, counter: TokenCounter, writer: WorkspaceWriter,
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
        raise ExtractError("binary file: not a supported document type")
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
