"""PPTX: a slide is a page — its title, the text of every shape (groups included, in reading
order), tables as rows with ` | ` between cells, and the speaker notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Extracted, OutlineEntry
from rlmcli.workspace.extract.files import copy_properties, on_path
from rlmcli.workspace.extract.tables import row_line
from rlmcli.workspace.extract.xlsx import open_checked


def _shape_lines(shape: Any, images: list[str]) -> list[str]:
    lines: list[str] = []
    if getattr(shape, "shape_type", None) is not None and shape.shape_type == 6:  # a group
        for child in sorted(shape.shapes, key=_position):
            lines.extend(_shape_lines(child, images))
        return lines
    if getattr(shape, "has_table", False) and shape.has_table:
        for row in shape.table.rows:
            line = row_line(cell.text for cell in row.cells)
            if line:
                lines.append(line)
        return lines
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        for paragraph in shape.text_frame.paragraphs:
            text = " ".join("".join(run.text for run in paragraph.runs).split())
            if text:
                lines.append(("  " * paragraph.level) + ("- " if paragraph.level else "") + text)
    if getattr(shape, "has_chart", False) and shape.has_chart and shape.chart.has_title:
        title = " ".join(shape.chart.chart_title.text_frame.text.split())
        if title:
            lines.append(f"[chart] {title}")
    if shape.shape_type == 13:  # a picture: its zip part, for look()
        try:
            rid = shape._element.blipFill.blip.rEmbed
            images.append(str(shape.part.related_part(rid).partname).lstrip("/"))
            lines.append("[figure]")
        except Exception:  # noqa: BLE001 - a picture without a readable part
            pass
    return lines


def _position(shape: Any) -> tuple[int, int]:
    return (int(shape.top or 0), int(shape.left or 0))


def extract_pptx(path: Path) -> Extracted:
    open_checked(path, "PPTX")
    import pptx

    try:
        deck = pptx.Presentation(str(path))
    except Exception as exc:  # noqa: BLE001 - python-pptx raises many types for broken packages
        raise ExtractError(f"not a valid PPTX file ({type(exc).__name__}: {exc})") from None
    pages: list[str] = []
    outline: list[OutlineEntry] = []
    images: dict[str, list[str]] = {}
    for number, slide in enumerate(deck.slides, start=1):
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text.split()) if title_shape is not None and title_shape.has_text_frame else ""
        lines = [f"# Slide {number}" + (f": {title}" if title else "")]
        found: list[str] = []
        for shape in sorted(slide.shapes, key=_position):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            lines.extend(_shape_lines(shape, found))
        if slide.has_notes_slide:
            notes = " ".join(slide.notes_slide.notes_text_frame.text.split()) if slide.notes_slide.notes_text_frame else ""
            if notes:
                lines.append(f"[notes] {notes}")
        pages.append("\n".join(lines) + "\n")
        outline.append(OutlineEntry(1, number, title or f"Slide {number}"))
        if found:
            images[str(number)] = found
    if not pages:
        raise ExtractError("no slides in this presentation")
    result = Extracted(pages=pages, extractor="python-pptx", outline=outline)
    if images:
        result.extra["page_images"] = images
    copy_properties(result.metadata, deck.core_properties)
    return result


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    return on_path(extract_pptx, path, data, ".pptx")
