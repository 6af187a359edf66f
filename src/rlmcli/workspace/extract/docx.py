"""DOCX with python-docx: paragraphs and tables in body order, headings as `#` lines."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Extracted
from rlmcli.workspace.extract.files import copy_properties, on_path
from rlmcli.workspace.extract.split import Sections, markdown_outline

_HEADING_STYLE = re.compile(r"^Heading\s+([1-9])$", re.I)


def _paragraph_line(paragraph: Any) -> str:
    text = str(paragraph.text).strip()
    if not text:
        return ""
    style = paragraph.style.name if paragraph.style is not None else ""
    m = _HEADING_STYLE.match(style or "")
    if m:
        return "#" * min(int(m.group(1)), 6) + " " + " ".join(text.split())
    if style == "Title":
        return "# " + " ".join(text.split())
    return text


def _table_lines(table: Any) -> list[str]:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            # A merged cell is returned once per grid column it spans.
            if cells and cells[-1] == text and text:
                continue
            cells.append(text)
        if any(cells):
            lines.append(" | ".join(cells))
    return lines


def _header_footer_lines(document: Any) -> tuple[list[str], list[str]]:
    headers: list[str] = []
    footers: list[str] = []
    for section in document.sections:
        for part, sink in ((section.header, headers), (section.footer, footers)):
            if part.is_linked_to_previous and sink:
                continue
            for paragraph in part.paragraphs:
                text = paragraph.text.strip()
                if text and text not in sink:
                    sink.append(text)
    return headers, footers


_BLIP = "{http://schemas.openxmlformats.org/drawingml/2006/main}blip"
_EMBED = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}embed"


def _images(document: Any, paragraph: Any) -> list[str]:
    """The zip part names of the pictures a paragraph shows (for look())."""
    names = []
    for blip in paragraph._element.iter(_BLIP):
        rid = blip.get(_EMBED)
        part = document.part.related_parts.get(rid) if rid else None
        if part is not None:
            names.append(str(part.partname).lstrip("/"))
    return names


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Office encrypts .docx files into one of these


def extract_docx(path: Path) -> Extracted:
    if path.stat().st_size == 0:
        raise ExtractError("empty file (0 bytes)")
    with open(path, "rb") as fh:
        if fh.read(8) == _OLE_MAGIC:
            raise ExtractError("an OLE2 compound file, not a DOCX: a password-protected document or a legacy "
                               "Word .doc; save it as .docx without a password")
    from rlmcli.workspace.extract.safezip import check_zip

    check_zip(path, "DOCX")
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(path))
    except zipfile.BadZipFile:
        raise ExtractError("not a valid DOCX file (not a ZIP archive; corrupt or truncated?)") from None
    except KeyError as exc:
        raise ExtractError(f"not a valid DOCX file (missing part {exc})") from None
    except Exception as exc:  # noqa: BLE001 - python-docx raises many types for broken packages
        raise ExtractError(f"not a valid DOCX file ({type(exc).__name__}: {exc})") from None

    blocks: list[tuple[str, list[str]]] = []  # (text, image parts it shows)
    try:
        headers, footers = _header_footer_lines(document)
    except Exception:  # noqa: BLE001 - headers are a bonus; a broken header part must not lose the body
        headers, footers = [], []
    blocks.extend((f"[header] {h}\n", []) for h in headers)
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            lines = _table_lines(item)
            if lines:
                blocks.append(("\n".join(lines) + "\n", []))
        else:
            images = _images(document, item)
            line = _paragraph_line(item)
            if images and not line:
                line = "[figure]"  # the model can look() at it
            if line:
                blocks.append((line + "\n", images))
    blocks.extend((f"[footer] {f}\n", []) for f in footers)
    if not blocks:
        raise ExtractError("no text in this DOCX document")
    sections, pages = Sections(), []
    page_images: dict[str, list[str]] = {}
    for text, images in blocks:
        pages.extend(sections.add(text))
        if images:
            page_images.setdefault(str(len(pages) + 1), []).extend(images)
    pages.extend(sections.close())
    result = Extracted(pages=pages, extractor="python-docx", outline=markdown_outline(pages))
    if page_images:
        result.extra["page_images"] = page_images
    copy_properties(result.metadata, document.core_properties)
    return result


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    return on_path(extract_docx, path, data, ".docx")
