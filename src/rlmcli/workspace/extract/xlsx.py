"""XLSX: each sheet is a section; rows become lines with ` | ` between cells, the header row
repeated on every page; formulas give their cached values (what Excel last showed). openpyxl
reads in streaming mode, with defusedxml guarding its XML."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Extracted, OutlineEntry
from rlmcli.workspace.extract.files import copy_properties, on_path
from rlmcli.workspace.extract.tables import table_pages

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def open_checked(path: Path, what: str) -> None:
    """The checks every Office Open XML file gets before a library touches it."""
    if path.stat().st_size == 0:
        raise ExtractError("empty file (0 bytes)")
    with open(path, "rb") as fh:
        if fh.read(8) == _OLE:
            raise ExtractError(f"an OLE2 compound file, not {what}: a password-protected document or a legacy "
                               f"Office file; save it as {what} without a password")
    from rlmcli.workspace.extract.safezip import check_zip

    check_zip(path, what)


def extract_xlsx(path: Path) -> Extracted:
    open_checked(path, "XLSX")
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for broken workbooks
        raise ExtractError(f"not a valid XLSX file ({type(exc).__name__}: {exc})") from None
    pages: list[str] = []
    outline: list[OutlineEntry] = []
    try:
        for sheet in book.worksheets:
            first = len(pages) + 1
            rows: Iterator[list[Any]] = (list(r) for r in sheet.iter_rows(values_only=True))
            pages.extend(table_pages(f"Sheet: {sheet.title}", rows))
            if len(pages) >= first:
                outline.append(OutlineEntry(1, first, f"Sheet: {sheet.title}"))
    except ExtractError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken file raises many types of error
        raise ExtractError(f"not a valid XLSX file ({type(exc).__name__}: {exc})") from None
    finally:
        book.close()
    if not pages:
        raise ExtractError("no cells with values in this workbook")
    result = Extracted(pages=pages, extractor="openpyxl", outline=outline)
    copy_properties(result.metadata, book.properties, ("title", "creator", "subject"))
    return result


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    return on_path(extract_xlsx, path, data, ".xlsx")
