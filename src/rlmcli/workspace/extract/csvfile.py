"""CSV and TSV: a table whose rows become lines with ` | ` between cells, the header row repeated
on every page. Read as a stream, so a large file's memory stays flat."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlmcli.errors import BinaryFile, ExtractError
from rlmcli.workspace.extract import Extracted
from rlmcli.workspace.extract.encoding import SNIFF_BYTES, sniff
from rlmcli.workspace.extract.tables import table_pages
from rlmcli.workspace.extract.text import looks_binary

csv.field_size_limit(16 << 20)  # one cell may be long; a larger one is not a table


def _rows(fh: Any, sample: str, tsv: bool) -> Iterator[list[str]]:
    try:
        dialect: Any = csv.Sniffer().sniff(sample[:65536], delimiters="\t" if tsv else ",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if tsv else csv.excel
    try:
        yield from csv.reader(fh, dialect)
    except csv.Error as exc:
        raise ExtractError(f"malformed CSV ({exc})") from None


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    raw: Any = io.BytesIO(data) if data is not None else open(path, "rb")
    head = raw.read(SNIFF_BYTES)
    if not head:
        raw.close()
        raise ExtractError("empty file (0 bytes)")
    if looks_binary(head[:8192]):
        raw.close()
        raise BinaryFile("binary file, not CSV text")
    how = sniff(head, partial=True)
    raw.seek(0)
    text = io.TextIOWrapper(raw, encoding=how.codec, errors=how.errors, newline="")
    sample = head.decode(how.codec, errors=how.errors)

    def pages() -> Iterator[str]:
        seen = False
        try:
            for page in table_pages(path.name, _rows(text, sample, path.suffix.lower() == ".tsv")):
                seen = True
                yield page
        finally:
            text.close()
        if not seen:
            raise ExtractError("no rows: the file holds only whitespace")

    result = Extracted(pages=pages(), extractor="csv")
    if how.warning:
        result.warnings.append(how.warning)
    return result
