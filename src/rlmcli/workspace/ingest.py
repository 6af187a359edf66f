"""Ingest: sources -> extracted pages -> committed documents, one bad input never stopping the rest."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rlmcli.errors import BinaryFile, ExtractError, Interrupted
from rlmcli.records import ExecutorKind
from rlmcli.tokens import TokenCounter
from rlmcli.workspace.build import Builder, IngestOptions, Progress, build_document, source_sha, source_stat, stale
from rlmcli.workspace.sources import Source, describe_os_error
from rlmcli.workspace.store import Workspace
from rlmcli.workspace.writer import WorkspaceWriter

__all__ = ["IngestOptions", "IngestReport", "Progress", "ingest", "ingest_sources", "workspace_path"]


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (name, existing doc id)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, what is wrong)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (doc id, warning)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (doc id, what went right worth saying: OCR)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why): symlinks out, FIFOs, ...
    # (name, what is wrong): files found by walking a folder that could not be read (encrypted,
    # corrupt): listed, but they do not fail the ingest as a file named on the command line does
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    skipped_binary: int = 0
    skipped_ignored: int = 0
    skipped_empty: int = 0
    pages: int = 0
    tokens: int = 0
    seconds: float = 0.0


def auto_key(sources: list[Source], shas: dict[Source, str]) -> str:
    """The automatic workspace's name: a hash of the inputs' content hashes."""
    digest = hashlib.sha256()
    for sha in sorted(shas[s] for s in sources):
        digest.update(sha.encode())
    return digest.hexdigest()[:20]


def ingest_sources(
    writer: WorkspaceWriter,
    sources: list[Source],
    progress: Progress | None = None,
    known_shas: dict[Source, str] | None = None,
    report: IngestReport | None = None,
    options: IngestOptions | None = None,
    executor: ExecutorKind = ExecutorKind.LOCAL,
    ship: bool = False,
) -> IngestReport:
    """Ingest each source into the workspace behind `writer`; failures are recorded, not raised.

    On Ray, extraction runs as one Ray task per file while this process still
    commits every document itself, in input order: the listing is the same as a local ingest."""
    report = report or IngestReport()
    known_shas = known_shas or {}
    options = options or IngestOptions()
    started = time.perf_counter()
    builder: Builder = build_document
    if executor is ExecutorKind.RAY:
        from rlmcli.workspace.ingest_ray import RayBuilder

        builder = RayBuilder(writer, sources, options, ship)
    if progress:
        progress.start(len(sources))
    from rlmcli.tokens import counter as token_counter
    from rlmcli.workspace.extract.pdf import drop_ahead
    from rlmcli.workspace.extract.pdf_workers import worker_pool

    try:
        with token_counter() as counter, worker_pool():
            try:
                _ingest_all(writer, sources, report, known_shas, counter, progress, options, builder)
            finally:
                drop_ahead()  # a PDF started ahead that was never collected (Ctrl-C, an error)
    finally:
        close = getattr(builder, "close", None)  # the Ray builder cancels extractions nobody took
        if close is not None:
            close()
    report.seconds = time.perf_counter() - started
    return report


def _ingest_all(writer: WorkspaceWriter, sources: list[Source], report: IngestReport,
                known_shas: dict[Source, str], counter: TokenCounter, progress: Progress | None,
                options: IngestOptions, builder: Builder = build_document) -> None:
    queue = list(sources)

    def ahead() -> None:  # the next PDF extracts on both cores while this document commits
        if builder is build_document and queue:
            _start_ahead(writer, queue[0], options)

    while queue:
        source = queue.pop(0)
        pages = 0
        if progress:
            progress.file_started(source.name)
        try:
            pages, attachments = _ingest_one(writer, source, report, known_shas.get(source), counter, progress,
                                             options, builder, ahead)
            queue[0:0] = attachments  # a mail's attachments (an archive's members) right after it
            if attachments and progress:
                progress.more(len(attachments))
        except ExtractError as exc:
            if isinstance(exc, BinaryFile) and not source.explicit:
                report.skipped_binary += 1
            else:
                _failed(report, source, str(exc))
        except OSError as exc:
            _failed(report, source, describe_os_error(exc))
        except MemoryError:
            _failed(report, source, "out of memory while extracting")
        if progress:
            progress.file_done(source.name, pages)


def _failed(report: IngestReport, source: Source, why: str) -> None:
    """A file named on the command line fails the ingest; one found by walking a folder is listed
    as skipped (a code tree with an encrypted test fixture still ingests with exit 0)."""
    (report.failed if source.explicit else report.unreadable).append((source.name, why))


def _start_ahead(writer: WorkspaceWriter, source: Source, options: IngestOptions) -> None:
    """Start extracting `source` early when it is a PDF that will need extracting."""
    if source.path is None or source.data is not None or source.path.suffix.lower() != ".pdf":
        return
    try:
        size, mtime_ns = source_stat(source)
    except OSError:
        return
    existing = writer.find_by_source(source.key)
    rec = writer.documents.get(existing) if existing else None
    if rec is not None and (rec.size, rec.mtime_ns) == (size, mtime_ns) and not stale(rec, options):
        return  # unchanged: nothing to extract
    from rlmcli.workspace.extract.pdf import start_ahead

    start_ahead(source.path)


def _ingest_one(writer: WorkspaceWriter, source: Source, report: IngestReport, sha: str | None,
                counter: TokenCounter, progress: Progress | None, options: IngestOptions,
                builder: Builder = build_document, before_commit: Callable[[], None] | None = None,
                ) -> tuple[int, list[Source]]:
    """(pages added, attachments to ingest next)."""
    key = source.key
    size, mtime_ns = source_stat(source)
    existing = writer.find_by_source(key)
    other_options = existing is not None and stale(writer.documents[existing], options)  # --ocr changed
    if existing is not None and source.data is None and not other_options:
        rec = writer.documents[existing]
        if rec.size == size and rec.mtime_ns == mtime_ns:
            report.unchanged.append(existing)  # fast path: no read at all
            return 0, []
    sha = sha or source_sha(source)
    if existing is not None and writer.documents[existing].sha256 == sha and not other_options:
        if writer.documents[existing].mtime_ns != mtime_ns:
            writer.update_record(existing, mtime_ns=mtime_ns)  # touched, not changed
        report.unchanged.append(existing)
        return 0, []
    same = writer.find_by_sha(sha) if key != "-" else None  # stdin keeps its name, whatever it repeats
    if same and same != existing:
        rec = writer.documents[same]
        if key not in rec.aliases and key != rec.source:
            writer.update_record(same, aliases=rec.aliases + [key])
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
    if before_commit is not None:
        before_commit()
    doc = writer.add(build, replace=existing)
    (report.replaced if existing else report.added).append(doc)
    report.warnings.extend((doc, w) for w in build.warnings)
    if build.extra.get("ocr_pages"):
        from rlmcli.workspace.extract import pages_named

        report.notes.append((doc, f"OCR: text recognised on {pages_named(build.extra['ocr_pages'])}"))
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
    executor: ExecutorKind = ExecutorKind.LOCAL,
    ship: bool = False,
    as_text: bool = False,
) -> tuple[Workspace, IngestReport]:
    """Ingest files, directories and `-` into a workspace (automatic when `workspace` is None).
    `as_text`: read every input as plain text, never as a PDF or office file."""
    from rlmcli.config import auto_workspaces_dir
    from rlmcli.workspace.sources import discover

    options = IngestOptions(ocr=ocr, follow_symlinks=follow_symlinks, as_text=as_text)
    found = discover(inputs, stdin, follow_symlinks)
    report = IngestReport(failed=list(found.errors), skipped=list(found.skipped), unreadable=list(found.unreadable),
                          skipped_ignored=found.counts["ignored"], skipped_empty=found.counts["empty"])
    shas: dict[Source, str] = {}
    if workspace is None:
        readable = []
        for source in found.sources:
            try:
                shas[source] = source_sha(source)
                readable.append(source)
            except OSError as exc:
                _failed(report, source, describe_os_error(exc))
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
