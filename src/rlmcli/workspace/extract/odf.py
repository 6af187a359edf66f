"""OpenDocument: ODT (headings as `#` lines, paragraphs, lists, tables as rows), ODS (each sheet a
section of rows, the header repeated on every page) and ODP (a slide per page, with its notes).
content.xml is parsed with defusedxml; password-protected files are named as such."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Extracted, OutlineEntry
from rlmcli.workspace.extract.split import markdown_outline, split_blocks
from rlmcli.workspace.extract.tables import row_line, table_pages

TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
DRAW = "{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}"
OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
PRESENTATION = "{urn:oasis:names:tc:opendocument:xmlns:presentation:1.0}"
MANIFEST = "{urn:oasis:names:tc:opendocument:xmlns:manifest:1.0}"
MAX_REPEAT = 1000  # a cell or row "repeated" a million times is formatting, not content


def _inline(element: Any) -> str:
    """The text of a paragraph: spans, spaces (text:s), tabs and line breaks."""
    parts: list[str] = [element.text or ""]
    for child in element:
        if child.tag == f"{TEXT}s":
            parts.append(" " * min(int(child.get(f"{TEXT}c", "1")), 100))
        elif child.tag == f"{TEXT}tab":
            parts.append("\t")
        elif child.tag == f"{TEXT}line-break":
            parts.append(" ")
        elif child.tag != f"{OFFICE}annotation":
            parts.append(_inline(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _rows(table: Any) -> Iterator[list[str]]:
    for row in table.iter(f"{TABLE}table-row"):
        cells: list[str] = []
        for cell in row:
            if cell.tag not in (f"{TABLE}table-cell", f"{TABLE}covered-table-cell"):
                continue
            text = " ".join(" ".join(_inline(p).split()) for p in cell.iter(f"{TEXT}p"))
            cells.extend([text] * min(int(cell.get(f"{TABLE}number-columns-repeated", "1")), MAX_REPEAT))
        if any(cells):
            for _ in range(min(int(row.get(f"{TABLE}number-rows-repeated", "1")), MAX_REPEAT)):
                yield cells


def _blocks(body: Any) -> Iterator[str]:
    """ODT body in document order: headings, paragraphs, list items, table rows."""
    for element in body:
        tag = element.tag
        if tag == f"{TEXT}h":
            text = " ".join(_inline(element).split())
            if text:
                yield "#" * min(int(element.get(f"{TEXT}outline-level", "1")), 6) + " " + text + "\n"
        elif tag == f"{TEXT}p":
            text = " ".join(_inline(element).split())
            if text:
                yield text + "\n"
        elif tag == f"{TABLE}table":
            lines = [row_line(r) for r in _rows(element)]
            if lines:
                yield "\n".join(line for line in lines if line) + "\n"
        elif tag in (f"{TEXT}list", f"{TEXT}list-item", f"{TEXT}section"):
            for block in _blocks(element):
                yield ("- " + block) if tag == f"{TEXT}list-item" and not block.startswith(("- ", "#")) else block


def _check(archive: zipfile.ZipFile, what: str) -> None:
    from defusedxml import ElementTree

    if "META-INF/manifest.xml" in archive.namelist():
        manifest = ElementTree.fromstring(archive.read("META-INF/manifest.xml"))
        if any(True for _ in manifest.iter(f"{MANIFEST}encryption-data")):
            raise ExtractError(f"password-protected {what}: save it without a password")


def extract_odf(path: Path, kind: str) -> Extracted:
    what = kind.upper()
    if path.stat().st_size == 0:
        raise ExtractError("empty file (0 bytes)")
    from defusedxml import ElementTree

    from rlmcli.workspace.extract.safezip import check_zip

    check_zip(path, what)
    with zipfile.ZipFile(path) as archive:
        _check(archive, what)
        try:
            root = ElementTree.fromstring(archive.read("content.xml"))
        except KeyError:
            raise ExtractError(f"not a valid {what} file (no content.xml)") from None
        except Exception as exc:  # noqa: BLE001 - a broken file raises many types of error
            raise ExtractError(f"not a valid {what} file (content.xml: {type(exc).__name__}: {exc})") from None
    body = root.find(f"{OFFICE}body")
    if body is None or len(body) == 0:
        raise ExtractError(f"not a valid {what} file (no office:body)")
    content = body[0]
    outline: list[OutlineEntry] = []
    pages: list[str] = []
    if kind == "ods":
        for sheet in content.iter(f"{TABLE}table"):
            first = len(pages) + 1
            name = sheet.get(f"{TABLE}name", "sheet")
            pages.extend(table_pages(f"Sheet: {name}", _rows(sheet)))
            if len(pages) >= first:
                outline.append(OutlineEntry(1, first, f"Sheet: {name}"))
    elif kind == "odp":
        for number, slide in enumerate(content.iter(f"{DRAW}page"), start=1):
            name = slide.get(f"{DRAW}name", f"Slide {number}")
            lines = [f"# Slide {number}: {name}"]
            notes = slide.find(f"{PRESENTATION}notes")
            for frame in slide:
                if frame is notes:
                    continue
                lines.extend(" ".join(_inline(p).split()) for p in frame.iter(f"{TEXT}p"))
                lines.extend(row_line(r) for t in frame.iter(f"{TABLE}table") for r in _rows(t))
            if notes is not None:
                said = " ".join(" ".join(_inline(p).split()) for p in notes.iter(f"{TEXT}p"))
                if said.strip():
                    lines.append(f"[notes] {said}")
            pages.append("\n".join(line for line in lines if line) + "\n")
            outline.append(OutlineEntry(1, number, name))
    else:
        pages = split_blocks(_blocks(content))
        outline = markdown_outline(pages)
    if not pages:
        raise ExtractError(f"no text in this {what} document")
    return Extracted(pages=pages, extractor="odf", outline=outline)


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    from rlmcli.workspace.extract.files import on_path

    return on_path(lambda p: extract_odf(p, kind), path, data, f".{kind}")
