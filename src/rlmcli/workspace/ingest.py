"""Ingest: sources -> extracted pages -> committed documents, one bad input never stopping the rest."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from rlmcli.errors import ExtractError, Interrupted
from rlmcli.tokens import TokenCounter
from rlmcli.workspace.sources import Source, describe_os_error
from rlmcli.workspace.store import DocumentBuild, PageSpool, Workspace, WorkspaceWriter

MAX_TEXT_BYTES = 4 << 30  # text is streamed page by page; beyond this it is surely not a document
MAX_HTML_BYTES = 64 << 20  # HTML is parsed whole
TOKEN_BATCH = 512  # pages of a streamed document counted at a time


class Progress(Protocol):
    def start(self, total_files: int) -> None: ...
    def file_done(self, name: str, pages: int) -> None: ...
    def page_done(self, name: str, pages: int) -> None: ...


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (name, existing doc id)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, what is wrong)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (doc id, warning)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why): symlinks out, FIFOs, ...
    skipped_binary: int = 0
    skipped_ignored: int = 0
    skipped_empty: int = 0
    pages: int = 0
    tokens: int = 0
    seconds: float = 0.0


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


def auto_key(sources: list[Source], shas: dict[int, str]) -> str:
    """The automatic workspace's name: a hash of the inputs' content hashes."""
    digest = hashlib.sha256()
    for sha in sorted(shas[id(s)] for s in sources):
        digest.update(sha.encode())
    return digest.hexdigest()[:20]


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


Builder = Callable[..., DocumentBuild]  # _build's signature: extracts one source (here, or on Ray)
MAX_ATTACHMENT_DEPTH = 2  # a mail attached to a mail attached to a mail: its attachments stop here


def _build(source: Source, sha: str, size: int, mtime_ns: int, counter: TokenCounter, writer: WorkspaceWriter,
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
    kind = detect_type(path, head, source.data)
    if kind == "binary":
        raise ExtractError("binary file: not a supported document type")
    if kind == "text" and size > MAX_TEXT_BYTES:
        raise ExtractError(f"text file too large ({size >> 20:,} MB; the limit is {MAX_TEXT_BYTES >> 20:,} MB)")
    if kind == "html" and size > MAX_HTML_BYTES:
        raise ExtractError(f"HTML file too large ({size >> 20:,} MB; the limit is {MAX_HTML_BYTES >> 20} MB: "
                           "convert it to text first)")
    counter.start()  # the encoding loads in a helper process while we extract
    on_pdf_page = (lambda done, total: progress.page_done(source.name, done)) if progress is not None else None
    result = extract(path, kind, source.data, Options(ocr=options.ocr, on_page=on_pdf_page))
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
    )
    if source.depth < MAX_ATTACHMENT_DEPTH:
        build.attachments = [Source(f"{source.name}/{a.name}", None, data=a.data, key=f"{source.key}#{a.name}",
                                    depth=source.depth + 1) for a in result.attachments]
    elif result.attachments:
        build.warnings.append(f"{len(result.attachments)} attachment(s) not ingested: nested deeper than "
                              f"{MAX_ATTACHMENT_DEPTH} levels")
    return build


def ingest_sources(
    writer: WorkspaceWriter,
    sources: list[Source],
    progress: Progress | None = None,
    known_shas: dict[int, str] | None = None,
    report: IngestReport | None = None,
    options: IngestOptions | None = None,
    executor: str = "local",
    ship: bool = False,
) -> IngestReport:
    """Ingest each source into the workspace behind `writer`; failures are recorded, not raised.

    With executor="ray", extraction runs as one Ray task per file while this process still
    commits every document itself, in input order: the listing is the same as a local ingest."""
    report = report or IngestReport()
    known_shas = known_shas or {}
    options = options or IngestOptions()
    started = time.perf_counter()
    builder: Builder = _build
    if executor == "ray":
        from rlmcli.workspace.ingest_ray import RayBuilder

        builder = RayBuilder(writer, sources, options, ship)
    if progress:
        progress.start(len(sources))
    from rlmcli.tokens import counter as token_counter

    try:
        with token_counter() as counter:
            _ingest_all(writer, sources, report, known_shas, counter, progress, options, builder)
    finally:
        close = getattr(builder, "close", None)  # the Ray builder cancels extractions nobody took
        if close is not None:
            close()
    report.seconds = time.perf_counter() - started
    return report


def _ingest_all(writer: WorkspaceWriter, sources: list[Source], report: IngestReport,
                known_shas: dict[int, str], counter: TokenCounter, progress: Progress | None,
                options: IngestOptions, builder: Builder = _build) -> None:
    queue = list(sources)
    while queue:
        source = queue.pop(0)
        pages = 0
        try:
            pages, attachments = _ingest_one(writer, source, report, known_shas.get(id(source)), counter, progress,
                                             options, builder)
            queue[0:0] = attachments  # a mail's attachments right after it
        except ExtractError as exc:
            if not source.explicit and str(exc).startswith("binary file"):
                report.skipped_binary += 1
            else:
                report.failed.append((source.name, str(exc)))
        except OSError as exc:
            report.failed.append((source.name, describe_os_error(exc)))
        except MemoryError:
            report.failed.append((source.name, "out of memory while extracting"))
        if progress:
            progress.file_done(source.name, pages)


def _ingest_one(writer: WorkspaceWriter, source: Source, report: IngestReport, sha: str | None,
                counter: TokenCounter, progress: Progress | None, options: IngestOptions,
                builder: Builder = _build) -> tuple[int, list[Source]]:
    """(pages added, attachments to ingest next)."""
    key = source.key
    size, mtime_ns = source_stat(source)
    existing = writer.find_by_source(key)
    if existing and source.data is None:
        rec = writer.documents[existing]
        if rec["size"] == size and rec["mtime_ns"] == mtime_ns:
            report.unchanged.append(existing)  # fast path: no read at all
            return 0, []
    sha = sha or source_sha(source)
    if existing and writer.documents[existing]["sha256"] == sha:
        if writer.documents[existing]["mtime_ns"] != mtime_ns:
            writer.update_record(existing, mtime_ns=mtime_ns)  # touched, not changed
        report.unchanged.append(existing)
        return 0, []
    same = writer.find_by_sha(sha)
    if same and same != existing:
        rec = writer.documents[same]
        if key not in rec["aliases"] and key != rec["source"]:
            writer.update_record(same, aliases=rec["aliases"] + [key])
        report.duplicates.append((source.name, same))
        return 0, []
    if not source.explicit and source.path is not None and size > 0:
        # Skip binary files found in directories before paying for a full extraction.
        from rlmcli.workspace.extract import detect_type

        with open(source.path, "rb") as fh:
            if detect_type(source.path, fh.read(8192)) == "binary":
                report.skipped_binary += 1
                return 0, []
    build = builder(source, sha, size, mtime_ns, counter, writer, progress, options)
    doc = writer.add(build, replace=existing)
    (report.replaced if existing else report.added).append(doc)
    report.warnings.extend((doc, w) for w in build.warnings)
    report.pages += build.page_count
    report.tokens += sum(build.page_tokens())
    return build.page_count, build.attachments


def workspace_path(spec: str) -> Path:
    """`-w` value -> directory: a path when it contains '/', else a name under RLM_HOME."""
    from rlmcli.config import workspaces_dir
    from rlmcli.errors import UsageError

    if "/" in spec or spec in (".", ".."):
        return Path(spec).expanduser()
    if spec.startswith("auto:"):  # an automatic workspace, as `rlm workspaces` names it (a prefix will do)
        from rlmcli.config import auto_workspaces_dir

        key = spec[5:]
        found = sorted(p for p in auto_workspaces_dir().glob(f"{key}*") if (p / "manifest.json").is_file()) if key else []
        if len(found) == 1:
            return found[0]
        raise UsageError(f"{spec!r} names {'no' if not found else 'more than one'} automatic workspace (see `rlm workspaces`)")
    if not spec or spec.startswith("."):
        raise UsageError(f"invalid workspace name {spec!r}")
    return workspaces_dir() / spec


def ingest(
    inputs: list[str],
    workspace: str | Path | None = None,
    stdin: BinaryIO | None = None,
    progress: Progress | None = None,
    on_wait: Callable[[], None] | None = None,
    follow_symlinks: bool = False,
    ocr: str = "auto",
    executor: str = "local",
    ship: bool = False,
) -> tuple[Workspace, IngestReport]:
    """Ingest files, directories and `-` into a workspace (automatic when `workspace` is None)."""
    from rlmcli.config import auto_workspaces_dir
    from rlmcli.workspace.sources import discover

    options = IngestOptions(ocr=ocr, follow_symlinks=follow_symlinks)
    found = discover(inputs, stdin, follow_symlinks)
    report = IngestReport(failed=list(found.errors), skipped=list(found.skipped),
                          skipped_ignored=found.counts["ignored"], skipped_empty=found.counts["empty"])
    shas: dict[int, str] = {}
    if workspace is None:
        readable = []
        for source in found.sources:
            try:
                shas[id(source)] = source_sha(source)
                readable.append(source)
            except OSError as exc:
                report.failed.append((source.name, describe_os_error(exc)))
        found.sources = readable
        root = auto_workspaces_dir() / auto_key(readable, shas)
        auto = True
    else:
        root = workspace if isinstance(workspace, Path) else workspace_path(workspace)
        auto = False
    created = not Workspace(root).exists()
    ws = Workspace.create(root, auto=auto)
    before = set(ws.documents())
    try:
        with ws.writer(on_wait=on_wait) as writer:  # commits every few seconds; Ctrl-C undoes the rest
            ingest_sources(writer, found.sources, progress, shas, report, options, executor, ship)
    except KeyboardInterrupt:
        kept = len(set(ws.documents()) - before)
        raise Interrupted(f"{kept} new documents had been committed to {root}; the same command ingests the rest"
                          if kept else "nothing was ingested") from None
    finally:
        if ws.documents():
            ws.touch()  # only a workspace with documents becomes the "last used"
        elif created:
            shutil.rmtree(root, ignore_errors=True)  # nothing went in: leave no empty workspace behind
    return ws, report
