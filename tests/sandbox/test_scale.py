"""grep, read and `context` with memory bounded whatever the workspace's size: the helpers run
in-process here, over a real ingested workspace, with the size limits made small."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from rlmcli.sandbox import helpers
from rlmcli.sandbox.helpers import Toolkit
from rlmcli.workspace import grep
from rlmcli.workspace.grep import LargeContext
from rlmcli.workspace.ingest import ingest
from rlmcli.workspace.reader import TEXT, TEXT_INDEX, WorkspaceReader
from tests.conftest import CORPUS, FIXTURES


class NoChannel:
    def request(self, kind: str, payload: dict[str, Any]) -> Any:
        raise AssertionError("no model calls here")


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = [str(FIXTURES / n) for n in ("contract.pdf", "contract.docx", "notes.md", "page.html")]
    if (CORPUS / "R-intro.pdf").exists():
        files.append(str(CORPUS / "R-intro.pdf"))
    base = tmp_path_factory.mktemp("scale")
    # The letters re.I equates with ASCII ones (Turkish İ and ı, the Kelvin sign, the long s): a
    # case-folding bytes search cannot see them, so grep must fall back to the exact search.
    exotic = base / "exotic.txt"
    exotic.write_text("Offices\nThe \u0130stanbul office\n\u212aelvin scale, 300 K\nthe \u017ftreet and its "
                      "\u017ftatus\nTermination for convenience\n", encoding="utf-8")
    root = base / "ws"
    ingest([*files, str(exotic)], root)
    return root


def kit(root: Path) -> Toolkit:
    return Toolkit(NoChannel(), {}, WorkspaceReader(root))


PATTERNS = [("insolvent", True), ("TERMINAT", True), ("Termination", False), (r"\(\d+\) days", True),
            (r"^\s*6\.\d", True), ("matrix", True), (r"lazy[- ]load\w*", True), ("Übersicht", True), ("é", True),
            # regexes that carry a literal every match needs (only pages holding it are decoded)
            (r"Terminat\w+ for", True), (r"notice\s+period", True), (r"(?i)STATUS", False), (r"stre+t", True),
            (r"kelvin\b", True), ("istanbul", True), ("kelvin", True), ("street", True), (r"Section \d+", False), (r"data\.frame\(", True)]


def _hits(toolkit: Toolkit, pattern: str, ignore_case: bool) -> list[tuple[str, int, int, str]]:
    return [(h.doc, h.page, h.line, h.text) for h in toolkit.grep(pattern, ignore_case=ignore_case, max_hits=5000)]


def _by_pages(root: Path, pattern: str, ignore_case: bool) -> list[tuple[str, int, int, str]]:
    """What grep must find, computed the plain way: every line of every page file."""
    import re

    rx = re.compile(pattern, re.I if ignore_case else 0)
    reader = WorkspaceReader(root)
    out = []
    for doc, rec in reader.documents.items():
        for page in range(1, rec["pages"] + 1):
            for number, line in enumerate(reader.read_page(doc, page).split("\n"), start=1):
                if rx.search(line):
                    out.append((doc, page, number, line))
    return out


@pytest.mark.parametrize("chunk", [16 << 20, 4096])
def test_grep_over_text_files_finds_what_a_line_by_line_scan_finds(ws_root: Path, chunk: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grep, "GREP_CHUNK", chunk)  # 4 KiB: many slices, pages cut at every boundary
    toolkit = kit(ws_root)
    for pattern, ignore_case in PATTERNS:
        assert _hits(toolkit, pattern, ignore_case) == _by_pages(ws_root, pattern, ignore_case), pattern


def test_a_workspace_from_before_text_files_is_grepped_page_by_page(ws_root: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(ws_root, old)
    for doc in (old / "docs").iterdir():
        (doc / TEXT).unlink()
        (doc / TEXT_INDEX).unlink()
    toolkit = kit(old)
    for pattern, ignore_case in PATTERNS:
        assert _hits(toolkit, pattern, ignore_case) == _by_pages(ws_root, pattern, ignore_case), pattern
    assert isinstance(toolkit.context_text(), str)


def test_text_file_holds_the_pages_end_to_end(ws_root: Path) -> None:
    reader = WorkspaceReader(ws_root)
    for doc, rec in reader.documents.items():
        index = reader.text_index(doc)
        assert index is not None and index.pages == rec["pages"]
        data = (ws_root / "docs" / doc / TEXT).read_bytes()
        text = data.decode()
        for page in range(1, rec["pages"] + 1):
            a, b = index.byte_span(page)
            c, d = index.char_span(page)
            assert data[a:b].decode() == text[c:d] == reader.read_page(doc, page)


def test_large_context_has_a_length_and_slices_without_holding_the_text(ws_root: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    whole = kit(ws_root).context_text()
    assert isinstance(whole, str) and whole.startswith("=== [")
    monkeypatch.setattr(grep, "CONTEXT_MAX_CHARS", 5000)
    big = kit(ws_root).context_text()
    assert isinstance(big, LargeContext)
    assert len(big) == len(whole)
    rng = random.Random(7)
    for _ in range(200):
        a = rng.randrange(len(whole))
        b = min(len(whole), a + rng.randrange(1, 4000))
        assert big[a:b] == whole[a:b]
    assert big[-20:] == whole[-20:] and big[0] == whole[0] and big[len(whole) - 1] == whole[-1]
    with pytest.raises(MemoryError, match="grep"):
        big[0:10_000]
    with pytest.raises(AttributeError, match=r"too many to hold in memory.*grep\(pattern\), search\(query\)"):
        big.lower()
    with pytest.raises(TypeError, match="grep"):
        "insolvent" in big  # noqa: B015
    assert "len(context) and context[a:b] work" in repr(big)


def test_read_of_many_pages_is_bounded(ws_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toolkit = kit(ws_root)
    assert toolkit.read("contract.pdf").count("[contract.pdf p.") == 8
    monkeypatch.setattr(helpers, "READ_MAX_CHARS", 1000)
    with pytest.raises(ValueError, match=r"contract.pdf pages 1-8 hold [\d,]+ characters, more than read\(\) returns"):
        toolkit.read("contract.pdf")
    assert toolkit.read("contract.pdf", 7).startswith("[contract.pdf p.7]")  # one page is always whole
