from __future__ import annotations

from pathlib import Path

import pytest
from pdfgen import IMAGE_STREAM, make_pdf

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Options
from rlmcli.workspace.extract.pdf import extract_pdf
from tests.conftest import FIXTURES, corpus_file


def test_contract_fixture_pages_outline_metadata() -> None:
    result = extract_pdf(FIXTURES / "contract.pdf")
    assert result.extractor == "pypdfium2"
    assert len(result.pages) == 8
    assert "MASTER SERVICES AGREEMENT" in result.pages[0]
    assert "6.2 Termination for cause" in result.pages[6]
    assert [(o.title, o.page) for o in result.outline][5] == ("6. Termination", 7)
    assert result.metadata["title"] == "Master Services Agreement"
    assert result.warnings == []


def test_real_manual_from_corpus() -> None:
    result = extract_pdf(corpus_file("R-intro.pdf"))
    assert len(result.pages) == 113
    assert any("An Introduction to R" in p for p in result.pages[:2])
    assert len(result.outline) > 100
    assert all("\r" not in p and "\x02" not in p for p in result.pages)


def test_large_pdf_uses_worker_processes_and_keeps_page_order() -> None:
    result = extract_pdf(corpus_file("fullrefman.pdf"))
    assert len(result.pages) == 2415
    # pages come back in order across the worker chunks: each page's footer number rises
    assert "The base package" in "".join(result.pages[31:33])


def test_page_without_text_layer_and_garbled_page_are_named(tmp_path: Path) -> None:
    garbled = bytes(range(1, 32)).decode("latin-1") * 3
    pdf = make_pdf(tmp_path / "scan.pdf", [["real text here"], IMAGE_STREAM, [garbled], ["more text"]])
    result = extract_pdf(pdf)  # OCR finds nothing on a blank image or on invisible control characters
    assert "no text on page 2 (scanned or blank?), even by OCR" in result.warnings
    assert "garbled text on page 3 (broken font encoding?)" in result.warnings
    assert "\x01" not in result.pages[2] and result.pages[0].strip() == "real text here"  # a short page keeps its layer
    off = extract_pdf(pdf, Options(ocr="never"))
    assert "no text on page 2 (scanned or blank?); OCR is off (--ocr never)" in off.warnings


def test_image_only_pdf_warns_for_every_page(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "scan.pdf", [IMAGE_STREAM, IMAGE_STREAM])
    result = extract_pdf(pdf)
    assert result.warnings == ["no text on any page (scanned or image-only PDF?), even by OCR"]


def _encrypt(src: Path, dst: Path, user: str) -> Path:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=str(src))
    writer.encrypt(user_password=user, owner_password="owner-secret", algorithm="RC4-128")
    with open(dst, "wb") as fh:
        writer.write(fh)
    return dst


def test_encrypted_pdf_with_empty_user_password_opens(tmp_path: Path) -> None:
    pdf = _encrypt(FIXTURES / "contract.pdf", tmp_path / "locked.pdf", user="")
    result = extract_pdf(pdf)
    assert "6.1 Termination for convenience" in result.pages[6]


def test_encrypted_pdf_needing_a_password_is_named(tmp_path: Path) -> None:
    pdf = _encrypt(FIXTURES / "contract.pdf", tmp_path / "locked.pdf", user="hunter2")
    with pytest.raises(ExtractError, match="encrypted PDF: a password is required"):
        extract_pdf(pdf)


def test_garbage_named_pdf_is_corrupt(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.7\nthis is not really a pdf\n" * 10)
    with pytest.raises(ExtractError, match="corrupt or truncated PDF"):
        extract_pdf(bad)


def test_truncated_pdf_is_named_corrupt(tmp_path: Path) -> None:
    data = (FIXTURES / "contract.pdf").read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ExtractError, match="corrupt or truncated PDF"):
        extract_pdf(cut)


def test_zero_byte_pdf(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(ExtractError, match="empty file"):
        extract_pdf(empty)


def test_a_table_keeps_one_row_per_line(tmp_path: Path) -> None:
    from pdfgen import table_stream

    rows = [["Segment", "Revenue 2023", "Revenue 2024"], ["Cloud services", "12,400", "15,900"],
            ["Licences", "8,100", "7,650"], ["Support and maintenance", "3,300", "3,420"], ["Total", "23,800", "26,970"]]
    pdf = make_pdf(tmp_path / "report.pdf", [table_stream("Revenue by segment", rows, [72, 260, 380]),
                                             ["A plain page of prose with no table at all."]])
    result = extract_pdf(pdf, Options(ocr="never"))
    lines = result.pages[0].splitlines()
    assert "Segment | Revenue 2023 | Revenue 2024" in lines
    assert "Support and maintenance | 3,300 | 3,420" in lines and "Total | 23,800 | 26,970" in lines
    assert lines[0] == "Revenue by segment" and lines[-1] == "Figures are in EUR thousands."
    assert " | " not in result.pages[1]


def test_page_progress_is_reported_as_pages_are_extracted() -> None:
    seen: list[tuple[int, int]] = []
    result = extract_pdf(FIXTURES / "contract.pdf", Options(on_page=lambda done, total: seen.append((done, total))))
    assert seen == [(n, 8) for n in range(1, 9)] and len(result.pages) == 8


def test_two_columns_of_prose_are_not_a_table(tmp_path: Path) -> None:
    left = ["The supplier shall deliver the", "services described in annex one", "with reasonable skill and care",
            "and in line with good practice", "in the industry at all times."]
    right = ["The customer shall provide the", "access, data and decisions that", "the supplier reasonably needs to",
             "perform the services on time", "and to the agreed standard."]
    content = b"\n".join(b"BT /F1 10 Tf %d %d Td (%s) Tj ET" % (x, 700 - 14 * i, text.encode())
                         for i, (a, b) in enumerate(zip(left, right, strict=True)) for x, text in ((72, a), (320, b)))
    result = extract_pdf(make_pdf(tmp_path / "columns.pdf", [content]), Options(ocr="never"))
    assert " | " not in result.pages[0]
