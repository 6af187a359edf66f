"""Rows of a table as pages: one row per line, cells separated by ` | ` so grep matches a row,
the header row repeated at the top of each page so every page reads on its own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from rlmcli.workspace.extract.split import SECTION_CHARS


def cell_text(value: Any) -> str:
    """A cell as one line of text: dates in ISO form, whole floats without '.0'."""
    import datetime

    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    return " ".join(str(value).split())


def row_line(cells: Iterable[Any]) -> str:
    values = [cell_text(c) for c in cells]
    while values and not values[-1]:
        values.pop()
    return " | ".join(values)


def table_pages(title: str, rows: Iterable[list[Any]], target: int = SECTION_CHARS) -> Iterator[str]:
    """Pages of one table (a sheet, a CSV file): `title` and the header row open every page."""
    header: str | None = None
    lines: list[str] = []
    size = 0
    part = 0

    def page() -> str:
        head = f"## {title}" + (f" (continued, part {part})" if part > 1 else "")
        top = [head] + ([f"[columns] {header}"] if header and part > 1 else [])
        return "\n".join(top + lines) + "\n"

    for cells in rows:
        line = row_line(cells)
        if not line:
            continue
        if header is None:
            header = line
        if size + len(line) > target and lines:
            part += 1
            yield page()
            lines, size = [], 0
        lines.append(line)
        size += len(line) + 1
    if lines or header is None:
        part += 1
        if lines:
            yield page()
