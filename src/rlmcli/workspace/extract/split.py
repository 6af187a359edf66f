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
    splitter = Sections(target)
    out = [s for block in blocks for s in splitter.add(block)]
    return out + splitter.close()


class Sections:
    """split_blocks, incrementally: add blocks, get the sections they complete."""

    def __init__(self, target: int = SECTION_CHARS) -> None:
        self.target = target
        self.current: list[str] = []
        self.size = 0

    def add(self, block: str) -> list[str]:
        done = []
        if self.size + len(block) > self.target and self.current:
            done.append("".join(self.current))
            self.current, self.size = [], 0
        if len(block) > self.target:
            pieces = list(_hard_split(block, self.target))
            done.extend(pieces[:-1])
            block = pieces[-1]
        self.current.append(block)
        self.size += len(block)
        return done

    def close(self) -> list[str]:
        done = ["".join(self.current)] if self.current else []
        self.current, self.size = [], 0
        return done


class Lines:
    """Text arriving in chunks, given back as whole lines (each with its newline). A line longer
    than LONG is given back in pieces cut at a space, so one 300 MB line is not held whole."""

    LONG = 1 << 20

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, text: str) -> list[str]:
        text = self.pending + text
        cut = text.rfind("\n") + 1
        self.pending = text[cut:]
        out = text[:cut].splitlines(keepends=True) if cut else []
        if len(self.pending) > self.LONG:
            space = self.pending.rfind(" ", 0, len(self.pending) - 1) + 1 or len(self.pending)
            out.append(self.pending[:space])
            self.pending = self.pending[space:]
        return out

    def close(self) -> list[str]:
        rest, self.pending = self.pending, ""
        return [rest] if rest else []


def split_text(text: str, target: int = SECTION_CHARS) -> list[str]:
    return split_blocks(text.splitlines(keepends=True), target)


def markdown_outline(pages: list[str]) -> list[OutlineEntry]:
    """`#` headings outside fenced code blocks, with the page each starts on."""
    outline = MarkdownOutline()
    for number, page in enumerate(pages, start=1):
        outline.page(number, page)
    return outline.entries


class MarkdownOutline:
    """markdown_outline, page by page (for streamed documents)."""

    def __init__(self) -> None:
        self.entries: list[OutlineEntry] = []
        self.in_fence = False

    def page(self, number: int, text: str) -> None:
        for line in text.splitlines():
            if _FENCE.match(line):
                self.in_fence = not self.in_fence
                continue
            if self.in_fence or not line.startswith("#"):
                continue
            m = _HEADING.match(line)
            if m:
                self.entries.append(OutlineEntry(len(m.group(1)), number, m.group(2)))
