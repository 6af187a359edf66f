"""Ingest progress on a terminal: a Rich bar that appears only when ingest takes a moment."""

from __future__ import annotations

import threading
from typing import Any

SHOW_AFTER = 0.5  # seconds; quick ingests finish without any flicker


class IngestProgress:
    """Implements `rlmcli.workspace.ingest.Progress`; does nothing unless stderr is a TTY."""

    def __init__(self, console: Any, show_after: float = SHOW_AFTER) -> None:
        self.console = console
        self.show_after = show_after
        self.enabled = console.is_terminal
        self.bar: Any = None
        self.task: Any = None
        self.total = 0
        self.done = 0
        self.pages = 0
        self.current = 0  # pages of the file being extracted
        self.current_total = 0  # its page count, when the extractor knows it (PDFs)
        self.name = ""
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()

    @property
    def single(self) -> bool:
        return self.total == 1

    def start(self, total_files: int) -> None:
        self.total = total_files
        if self.enabled and total_files:
            # A timer, not the next file_done: one big PDF may take seconds by itself.
            self.timer = threading.Timer(self.show_after, self._show)
            self.timer.daemon = True
            self.timer.start()

    def _show(self) -> None:
        with self.lock:
            if self.bar is None and self.done < self.total:
                self._create()

    def _create(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("ingesting"), BarColumn(), TextColumn("{task.fields[count]}"), TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[name]}"), console=self.console, transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("ingest", total=self.total, completed=self.done, count=self._count(),
                                      name=self.name[-40:])
        if self.single and self.current_total:
            self.bar.update(self.task, total=self.current_total, completed=self.current)

    def _count(self) -> str:
        """'3/10 files, 120 pages'; for one file whose page count is known, 'page 120/2,415'."""
        if self.single and self.current_total:
            return f"page {self.current:,}/{self.current_total:,}"
        return f"{self.done}/{self.total} files, {self.pages + self.current:,} pages"

    def more(self, files: int) -> None:
        """Files found inside one (a mail's attachments, an archive's members) join the count."""
        with self.lock:
            self.total += files
            if self.bar is not None:
                self.bar.update(self.task, total=self.total, count=self._count())

    def file_started(self, name: str) -> None:
        """Named at once: a big file may take a while before its first page is done."""
        with self.lock:
            self.name, self.current, self.current_total = name, 0, 0
            if self.bar is not None:
                self.bar.update(self.task, name=name[-40:], count=self._count())

    def file_done(self, name: str, pages: int) -> None:
        with self.lock:
            self.done += 1
            self.pages += pages
            self.current = self.current_total = 0
            if self.bar is not None:
                self.bar.update(self.task, completed=self.done, total=self.total, count=self._count(), name=name[-40:])

    def page_done(self, name: str, pages: int, total: int = 0) -> None:
        """A long document's pages as they are extracted (the bar moves within one file). With one
        file to ingest and its page count known, the bar and the time left follow its pages."""
        with self.lock:
            self.current, self.current_total = pages, total or self.current_total
            if self.bar is not None and (pages % 16 == 0 or pages == total):
                shown = f"{name[-32:]} p.{pages}" if not (self.single and self.current_total) else name[-40:]
                if self.single and self.current_total:
                    self.bar.update(self.task, total=self.current_total, completed=pages)
                self.bar.update(self.task, count=self._count(), name=shown)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            self.done = self.total  # a late timer must not start the bar now
            if self.bar is not None:
                self.bar.stop()
                self.bar = None
