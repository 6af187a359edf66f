"""PDF pages extracted in forked worker processes, page ranges shared between them.

A page that takes longer than PAGE_SECONDS (a malicious or broken content stream) costs its
worker, which is killed and replaced, and the page is named; a worker that dies loses only the
pages it had left. Every page done is reported as it arrives, for the progress bar.

Inside `worker_pool()` (an ingest) the workers live for the whole ingest and take one job per
document: each fork marks the parent's memory copy-on-write, and a fork per document cost the
parent more in page faults than its own commits on a folder of filings. Outside it, a document's
workers are forked for it and stopped after it.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from rlmcli import framing
from rlmcli.errors import ExtractError
from rlmcli.forking import fork_server, sigint_held
from rlmcli.workspace.extract.pdf_text import PageText, page_text

PAGES_PER_WORKER = 16  # a worker's share costs an open of the document: worth it from this many pages
MAX_WORKERS = 8
PAGE_SECONDS = 30.0  # one page's extraction may take this long



class PageResult(NamedTuple):
    text: str
    problem: str | None  # why the page has no text from PDFium (pypdf tries it then), or None
    spaced: float  # the share of its text that is letter-spaced
    timed_out: bool = False  # stopped after PAGE_SECONDS (pypdf is not tried: it would hang too)


TIMED_OUT = f"timed out after {PAGE_SECONDS:g} s"


def page_of(pdf: Any, index: int) -> PageText:
    """One page's text from an open pypdfium2 document, through the raw calls (the helper
    objects' finalizers cost more than a page's text)."""
    import pypdfium2.raw as raw

    page = raw.FPDF_LoadPage(pdf.raw, index)
    if not page:
        raise ExtractError(f"PDFium could not load page {index + 1}")
    textpage = raw.FPDFText_LoadPage(page)
    try:
        if not textpage:
            raise ExtractError(f"PDFium could not read the text of page {index + 1}")
        return page_text(textpage)
    finally:
        if textpage:
            raw.FPDFText_ClosePage(textpage)
        raw.FPDF_ClosePage(page)


def _result(pdf: Any, index: int) -> tuple[int, str, str | None, float]:
    try:
        page = page_of(pdf, index)
        return index, page.text, None, page.spaced
    except Exception as exc:  # noqa: BLE001 - one bad page must not lose the others
        return index, "", f"{type(exc).__name__}: {exc}", 0.0


def _serve(jobs: int, results: int) -> None:
    """The worker: for each job (path, page indexes), one frame (index, text, problem, share)
    per page. It ends when the parent closes the job pipe."""
    import pypdfium2 as pdfium

    while True:
        try:
            path, indexes = framing.read_frame(jobs, framing.MARSHAL)
        except EOFError:
            return
        try:
            pdf = pdfium.PdfDocument(path)
        except Exception as exc:  # noqa: BLE001 - a broken file raises many types of error
            for index in indexes:
                framing.write_frame(results, (index, "", f"{type(exc).__name__}: {exc}", 0.0), framing.MARSHAL)
            continue
        try:
            for index in indexes:
                framing.write_frame(results, _result(pdf, index), framing.MARSHAL)
        finally:
            pdf.close()  # reopened for each job: the file may have changed between two


# ---- the parent's side ----------------------------------------------------------------------------

class _Worker:
    def __init__(self) -> None:
        self.pid, self.jobs, self.fd = fork_server(_serve)  # Ctrl-C is the parent's to handle
        self.frames = framing.FrameReader(framing.MARSHAL)
        self.todo: list[int] = []
        self.since = time.monotonic()

    def send(self, path: str, indexes: list[int]) -> None:
        self.todo, self.frames, self.since = list(indexes), framing.FrameReader(framing.MARSHAL), time.monotonic()
        framing.write_frame(self.jobs, (path, indexes), framing.MARSHAL)

    def read(self) -> list[tuple[int, str, str | None, float]]:
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise EOFError
        out: list[tuple[int, str, str | None, float]] = self.frames.feed(chunk)
        for index, *_ in out:
            self.todo.remove(index)
        if out:
            self.since = time.monotonic()
        return out

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        os.close(self.jobs)


class _Pool:
    def __init__(self) -> None:
        self.idle: list[_Worker] = []

    def take(self, n: int) -> list[_Worker]:
        taken: list[_Worker] = []
        while len(taken) < n:
            if self.idle:
                taken.append(self.idle.pop())
            else:  # listed before Ctrl-C can land, so the caller's cleanup stops it
                with sigint_held():
                    taken.append(_Worker())
        return taken

    def give_back(self, worker: _Worker) -> None:
        """A worker with its job done waits for the next; one cut off mid-job is stopped."""
        if worker.todo or worker.frames.partial:
            worker.stop()
        else:
            self.idle.append(worker)

    def close(self) -> None:
        for worker in self.idle:
            worker.stop()
        self.idle = []


_pool: _Pool | None = None


@contextmanager
def worker_pool() -> Iterator[None]:
    """Keep PDF workers alive across documents until the block ends (an ingest)."""
    global _pool
    outer, _pool = _pool, _Pool()
    try:
        yield
    finally:
        pool, _pool = _pool, outer
        pool.close()


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Forking while another thread runs could leave the child waiting on a lock for ever."""
    threading = sys.modules.get("threading")
    return hasattr(os, "fork") and (threading is None or threading.active_count() == 1)


class Run:
    """One PDF's pages on their way out of the workers. Started ahead of `collect`, the workers
    extract while the caller does other work; their pipes hold what they have done."""

    def __init__(self, path: str, total: int) -> None:
        self.path, self.total = path, total
        self._own = _pool is None
        self._pool = _pool if _pool is not None else _Pool()
        share = max(1, min(cpus(), MAX_WORKERS, total // PAGES_PER_WORKER, total))
        self.workers: list[_Worker] = []
        try:
            self.workers = self._pool.take(share)
            for i, worker in enumerate(self.workers):
                worker.send(path, list(range(i, total, share)))
        except BaseException:
            self.stop()
            raise

    def collect(self, on_page: Callable[[int], None] | None) -> list[PageResult]:
        """(text, problem, letter-spaced share) for every page, each page bounded by PAGE_SECONDS."""
        results: list[PageResult | None] = [None] * self.total
        workers, done = self.workers, 0
        for worker in workers:  # time spent waiting to be collected is not the page's
            worker.since = time.monotonic()
        try:
            while any(w.todo for w in workers):
                busy = [w for w in workers if w.todo]
                ready, _, _ = select.select([w.fd for w in busy], [], [], 0.5)
                now = time.monotonic()
                for worker in busy:
                    if worker.fd in ready:
                        try:
                            for index, text, problem, spaced in worker.read():
                                results[index] = PageResult(text, problem, spaced)
                                done += 1
                                if on_page is not None:
                                    on_page(done)
                        except EOFError:  # died mid-document: its pages left fall to pypdf
                            for index in worker.todo:
                                results[index] = PageResult("", "the extraction process died", 0.0)
                            self._replace(worker, [])
                            continue
                    if worker.todo and now - worker.since > PAGE_SECONDS:
                        results[worker.todo[0]] = PageResult("", TIMED_OUT, 0.0, timed_out=True)
                        self._replace(worker, worker.todo[1:])
        finally:
            self.stop()
        return [r if r is not None else PageResult("", "not extracted", 0.0) for r in results]

    def _replace(self, worker: _Worker, rest: list[int]) -> None:
        """Stop a worker that hung or died; a fresh one takes the pages it had left."""
        self.workers.remove(worker)
        worker.stop()
        if rest:
            fresh = self._pool.take(1)[0]
            self.workers.append(fresh)
            fresh.send(self.path, rest)

    def stop(self) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            self._pool.give_back(worker)
        if self._own:
            self._pool.close()


def in_process(path: str, total: int, on_page: Callable[[int], None] | None) -> list[PageResult]:
    """Every page in this process: where forking is not safe (other threads run)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path)
    out: list[PageResult] = []
    try:
        for index in range(total):
            _, text, problem, spaced = _result(pdf, index)
            out.append(PageResult(text, problem, spaced))
            if on_page is not None:
                on_page(index + 1)
    finally:
        pdf.close()
    return out
