from __future__ import annotations

import zipfile
from pathlib import Path

import docx
import pytest

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract.docx import extract_docx
from tests.conftest import FIXTURES


def test_contract_docx_body_order_tables_headings_headers() -> None:
    result = extract_docx(FIXTURES / "contract.docx")
    text = "".join(result.pages)
    lines = text.splitlines()
    assert lines[0] == "[header] CONFIDENTIAL - Northwind / Contoso"
    assert lines[-1] == "[footer] MSA v3.2 - page footer"
    assert "# 6. Termination" in lines
    # the table sits between its section's paragraph and the next heading, cells joined by ' | '
    fees = lines.index("# 3. Fees and Payment")
    assert lines[fees + 2] == "Item | Amount | Due"
    assert lines[fees + 4] == "Termination fee | 3 months of fees | on termination"
    assert lines[fees + 5] == "# 4. Confidentiality"
    assert [o.title for o in result.outline][:2] == ["Master Services Agreement", "1. Definitions"]
    assert result.metadata["title"] == "Master Services Agreement"


def test_long_docx_splits_at_paragraph_boundaries(tmp_path: Path) -> None:
    document = docx.Document()
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 8 for i in range(200)]
    for p in paragraphs:
        document.add_paragraph(p)
    path = tmp_path / "long.docx"
    document.save(str(path))
    result = extract_docx(path)
    assert len(result.pages) > 5
    assert all(len(page) <= 3000 for page in result.pages)
    for page in result.pages:  # every section starts and ends on a whole paragraph
        assert page.startswith("Paragraph ") and page.endswith("amet\n")
    assert "".join(result.pages).count("Paragraph ") == 200


def test_broken_docx_not_a_zip(tmp_path: Path) -> None:
    bad = tmp_path / "broken.docx"
    bad.write_bytes(b"PK\x03\x04 definitely not a complete archive")
    with pytest.raises(ExtractError, match="not a valid DOCX file"):
        extract_docx(bad)


def test_docx_zip_without_document_part(tmp_path: Path) -> None:
    bad = tmp_path / "empty-package.docx"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("hello.txt", "no word/document.xml here")
    with pytest.raises(ExtractError, match="not a valid DOCX file"):
        extract_docx(bad)


def test_empty_docx_document(tmp_path: Path) -> None:
    path = tmp_path / "blank.docx"
    docx.Document().save(str(path))
    with pytest.raises(ExtractError, match="no text"):
        extract_docx(path)


def test_password_protected_docx_is_named_as_such() -> None:
    # fixtures/encrypted.docx: contract.docx encrypted by Word's scheme (ECMA-376 agile), made
    # with `msoffcrypto-tool -e -p secret` (see fixtures/make_fixtures.py).
    with pytest.raises(ExtractError, match="password-protected document or a legacy Word .doc"):
        extract_docx(FIXTURES / "encrypted.docx")
