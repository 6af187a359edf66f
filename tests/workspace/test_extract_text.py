from __future__ import annotations

from pathlib import Path

import pytest

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import detect_type
from rlmcli.workspace.extract.html import extract_html
from rlmcli.workspace.extract.split import split_text
from rlmcli.workspace.extract.text import extract_text
from tests.conftest import FIXTURES, corpus_file


def test_licence_text_from_corpus_splits_at_line_boundaries() -> None:
    path = corpus_file("GPL-3")
    result = extract_text(path)
    assert "".join(result.pages) == path.read_text()
    assert all(len(p) <= 3000 and p.endswith("\n") for p in result.pages)


def test_split_is_lossless_and_bounded() -> None:
    text = "".join(f"line {i} " + "x" * (i % 90) + "\n" for i in range(5000))
    pages = split_text(text)
    assert "".join(pages) == text
    assert max(len(p) for p in pages) <= 3000


def test_one_50mb_line_is_split_anyway(tmp_path: Path) -> None:
    path = tmp_path / "one-line.txt"
    path.write_bytes(b"word " * 10_000_000)  # 50 MB, no newline
    result = extract_text(path)
    result.pages = list(result.pages)  # streamed: a 50 MB file is read chunk by chunk
    assert len(result.pages) > 16_000
    assert max(len(p) for p in result.pages) <= 3000
    assert sum(len(p) for p in result.pages) == 50_000_000


def test_non_utf8_text_is_decoded_and_warned(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes("Café crème à 3,50 € — résumé des clauses de résiliation\n".encode("cp1252") * 40)
    result = extract_text(path)
    assert "Café crème à 3,50 €" in result.pages[0]
    assert len(result.warnings) == 1 and result.warnings[0].startswith("not UTF-8: decoded as")


def test_markdown_outline_skips_code_fences() -> None:
    result = extract_text(FIXTURES / "notes.md")
    assert [(o.level, o.title) for o in result.outline] == [
        (1, "Project notes"), (2, "Shortlist"), (2, "Open questions"), (3, "Pricing")]


def test_binary_content_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blob.txt"
    path.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(ExtractError, match="binary file"):
        extract_text(path)


def test_zero_byte_text(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(ExtractError, match="empty file"):
        extract_text(path)


@pytest.mark.parametrize(("name", "head", "kind"), [
    ("a.pdf", b"%PDF-1.7", "pdf"), ("noext", b"%PDF-1.4", "pdf"), ("a.docx", b"PK\x03\x04", "docx"),
    ("a.html", b"<p>", "html"), ("page", b"<!DOCTYPE html><html>", "html"), ("a.png", b"\x89PNG", "png"), ("a.gif", b"GIF89a", "binary"),
    ("a.py", b"print('hi')\n", "text"), ("Makefile", b"all:\n\ttrue\n", "text"), ("x.bin2", b"\x00\x01\x02", "binary"),
])
def test_detect_type(name: str, head: bytes, kind: str) -> None:
    assert detect_type(Path(name), head) == kind


def test_html_visible_text_only() -> None:
    result = extract_html(FIXTURES / "page.html")
    text = "".join(result.pages)
    assert "do not index me" not in text and "color: red" not in text
    assert "# Supplier FAQ" in text and "## Payments" in text
    assert "How do I terminate the agreement? See section 6 of the MSA." in text
    assert "- Invoices are due in 30 days." in text
    assert "Basic | EUR 48,500" in text
    assert result.metadata["title"] == "Supplier FAQ"
    assert [o.title for o in result.outline] == ["Supplier FAQ", "Payments"]
