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
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()

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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
            TextColumn("{task.fields[pages]} pages"), TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[name]}"), console=self.console, transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("ingest", total=self.total, completed=self.done, pages=self.pages, name="")

    def file_done(self, name: str, pages: int) -> None:
        with self.lock:
            self.done += 1
            self.pages += pages
            self.current = 0
            if self.bar is not None:
                self.bar.update(self.task, completed=self.done, pages=self.pages, name=name[-40:])

    def page_done(self, name: str, pages: int) -> None:
        """A long document's pages as they are extracted (the bar moves within one file)."""
        with self.lock:
            self.current = pages
            if self.bar is not None and pages % 16 == 0:
                self.bar.update(self.task, pages=self.pages + pages, name=f"{name[-32:]} p.{pages}")

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            self.done = self.total  # a late timer must not start the bar now
            if self.bar is not None:
                self.bar.stop()
                self.bar = None
