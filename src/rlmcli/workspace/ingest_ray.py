"""Extraction on Ray: one task per file, committed by the driver in input order.

`RayBuilder` submits every source that may need extracting when the ingest starts, then stands in
for `build_document` in the driver's usual sequential loop: it hands back the worker's result for that
source. Dedupe, replacement and commits stay in the driver, so the listing equals a local ingest.
Files reach workers by path (a shared filesystem), or as bytes in the object store with `ship`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from rlmcli.cluster import ClusterError, connect, describe, disconnect, get, lost
from rlmcli.errors import ExtractError
from rlmcli.workspace.build import (
    DocumentBuild,
    IngestOptions,
    PageSpool,
    Progress,
    build_document,
    source_sha,
    source_stat,
    stale,
)
from rlmcli.workspace.sources import Source
from rlmcli.workspace.writer import WorkspaceWriter


class _Scratch:
    """What `build_document` needs of a writer on a worker: somewhere to spool a streamed document."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rlm-ray-ingest-"))

    def new_tmp(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root))


def _remote_build(source: Source, options: IngestOptions) -> DocumentBuild:
    """Runs on a Ray worker: extract and count tokens; pages come back as a list."""
    from rlmcli.tokens import counter as token_counter

    size, mtime_ns = source_stat(source)
    scratch = _Scratch()
    try:
        with token_counter() as counter:
            build = build_document(source, source_sha(source), size, mtime_ns, counter, scratch, None, options)
            build.page_tokens()
        if isinstance(build.pages, PageSpool):
            build.pages = list(build.pages.texts())
        return build
    finally:
        shutil.rmtree(scratch.root, ignore_errors=True)


class RayBuilder:
    def __init__(self, writer: WorkspaceWriter, sources: list[Source], options: IngestOptions, ship: bool) -> None:
        from rlmcli.workspace.extract import detect_type

        ray = self.ray = connect()
        task = ray.remote(num_cpus=1, max_retries=1)(_remote_build)
        self.refs: dict[Source, Any] = {}  # the driver's own Source objects: what it hands back
        for original in sources:
            source = original
            if source.path is not None and source.data is None:
                try:
                    st = os.stat(source.path)
                    existing = writer.find_by_source(source.key)
                    rec = writer.documents[existing] if existing else None
                    if rec is not None and (rec.size, rec.mtime_ns) == (st.st_size, st.st_mtime_ns) \
                            and not stale(rec, options):
                        continue  # unchanged: the driver will not read it at all
                    if not source.explicit:
                        with open(source.path, "rb") as fh:
                            if detect_type(source.path, fh.read(8192)) == "binary":
                                continue  # skipped by the driver before any extraction
                    if ship:
                        source = replace(source, data=source.path.read_bytes())
                except OSError:
                    continue  # the driver reports it when it gets there
            try:
                self.refs[original] = task.remote(source, options)
            except Exception as exc:  # noqa: BLE001 - Ray's own errors (a full object store), as one line
                self.close()
                raise ClusterError(f"could not send {source.name} to the Ray cluster: {describe(exc)}") from None

    def __call__(self, source: Source, sha: str, size: int, mtime_ns: int, counter: Any, writer: WorkspaceWriter,
                 progress: Progress | None, options: IngestOptions) -> DocumentBuild:
        ref = self.refs.pop(source, None)
        if ref is None:  # an attachment found on the way, or a file that was not sent
            return build_document(source, sha, size, mtime_ns, counter, writer, progress, options)
        try:
            build: DocumentBuild = get(ref)  # a ClusterError when the head stops answering ends the ingest
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None  # ExtractError, OSError...: reported exactly as a local ingest would
            raise ExtractError(f"failed on the Ray cluster: {describe(exc)}") from None
        except self.ray.exceptions.RayError as exc:  # its node or worker died, beyond the task's retry
            raise ExtractError(f"lost on the Ray cluster: {describe(exc)}") from None
        if build.sha256 != sha:  # the file changed between the worker's read and ours
            return build_document(source, sha, size, mtime_ns, counter, writer, progress, options)
        build.size, build.mtime_ns = size, mtime_ns
        return build

    def close(self) -> None:
        for ref in [] if lost() else self.refs.values():  # duplicates, failures before their turn: unneeded
            with contextlib.suppress(Exception):
                self.ray.cancel(ref)
        self.refs.clear()
        disconnect()
