"""Splitting long text into page-sized sections and finding Markdown-style headings."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rlmcli.workspace.extract import OutlineEntry

SECTION_CHARS = 3000
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _hard_split(block: str, target: int) -> Iterable[str]:
    """Cut one over-long block (a 50 MB line, say) near `target`, preferring whitespace."""
    start, n = 0, len(block)
    while n - start > target:
        end = start + target
        cut = block.rfind(" ", start + target * 3 // 4, end)
        if cut <= start:
            cut = block.rfind("\n", start + target // 2, end)
        if cut <= start:
            cut = end
        else:
            cut += 1
        yield block[start:cut]
        start = cut
    if start < n:
        yield block[start:]


def split_blocks(blocks: Iterable[str], target: int = SECTION_CHARS) -> list[str]:
    """Group blocks (lines, paragraphs) into sections of about `target` characters.

    A section ends at a block boundary; a single block longer than `target` is cut.
    Each block must carry its own trailing newline.
    """
    sections: list[str] = []
    current: list[str] = []
    size = 0
    for block in blocks:
        if size + len(block) > target and current:
            sections.append("".join(current))
            current, size = [], 0
        if len(block) > target:
            pieces = list(_hard_split(block, target))
            sections.extend(pieces[:-1])
            block = pieces[-1]
        current.append(block)
        size += len(block)
    if current:
        sections.append("".join(current))
    return sections


def split_text(text: str, target: int = SECTION_CHARS) -> list[str]:
    return split_blocks(text.splitlines(keepends=True), target)


def markdown_outline(pages: list[str]) -> list[OutlineEntry]:
    """`#` headings outside fenced code blocks, with the page each starts on."""
    outline: list[OutlineEntry] = []
    in_fence = False
    for number, page in enumerate(pages, start=1):
        for line in page.splitlines():
            if _FENCE.match(line):
                in_fence = not in_fence
                continue
            if in_fence or not line.startswith("#"):
                continue
            m = _HEADING.match(line)
            if m:
                outline.append(OutlineEntry(len(m.group(1)), number, m.group(2)))
    return outline
