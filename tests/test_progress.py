from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console

from rlmcli.progress import IngestProgress
from rlmcli.workspace.ingest import ingest


class SlowProgress(IngestProgress):
    """Slows each file down so the bar has time to appear, as in a long ingest."""

    def file_done(self, name: str, pages: int) -> None:
        time.sleep(0.02)
        super().file_done(name, pages)


def test_bar_appears_on_a_terminal_for_a_long_ingest(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"f{i}.txt").write_text(f"text {i}\n")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    progress = SlowProgress(console, show_after=0.1)
    ingest([str(tmp_path / f"f{i}.txt") for i in range(30)], tmp_path / "ws", progress=progress)
    progress.stop()
    screen = out.getvalue()
    assert "ingesting" in screen and "/30" in screen and "pages" in screen
    assert "\x1b[" in screen  # a live, redrawn bar


def test_no_bar_when_not_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    out = io.StringIO()
    progress = IngestProgress(Console(file=out, force_terminal=False), show_after=0.0)
    ingest([str(tmp_path / "a.txt")], tmp_path / "ws", progress=progress)
    progress.stop()
    assert out.getvalue() == ""
