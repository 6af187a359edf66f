"""Plain text, Markdown, data files and source code.

Files up to STREAM_BYTES are read whole; larger ones are streamed: decoded in chunks and cut
into pages as they arrive, so memory stays flat whatever the file's size. Their encoding is
judged from the first megabyte (encoding.py decides).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rlmcli.errors import BinaryFile, ExtractError
from rlmcli.workspace.extract import Extracted
from rlmcli.workspace.extract.encoding import BOMS, FALLBACK_USES, SNIFF_BYTES, Decoding, decode, fallback_handler, sniff
from rlmcli.workspace.extract.split import Lines, MarkdownOutline, Sections, markdown_outline, split_text

__all__ = ["SNIFF_BYTES", "decode", "extract", "extract_text", "looks_binary", "stream_text"]

STREAM_BYTES = 8 << 20
CODE_SUFFIXES = {".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".scala", ".go",
                 ".rs", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".swift", ".cs", ".rb", ".php", ".pl", ".r",
                 ".jl", ".lua", ".sh", ".bash", ".sql", ".css", ".scss", ".vue", ".svelte", ".ex", ".exs", ".erl",
                 ".hs", ".ml", ".clj", ".dart", ".zig", ".proto", ".tf", ".yaml", ".yml", ".toml", ".json"}
CHUNK_BYTES = 4 << 20
# Bytes that never occur in text, apart from the usual \t \n \f \r and ESC.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))


def looks_binary(head: bytes) -> bool:
    """A NUL byte, or many control bytes, in the first few KB means binary (as git decides)."""
    if not head:
        return False
    if any(head.startswith(bom) for bom, _ in BOMS):
        return False
    if b"\x00" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROL))
    return controls / len(head) > 0.10


def read_bytes(path: Path, data: bytes | None) -> bytes:
    if data is None:
        data = path.read_bytes()
    if not data:
        raise ExtractError("empty file (0 bytes)")
    return data


def extract_text(path: Path, data: bytes | None = None) -> Extracted:
    size = len(data) if data is not None else path.stat().st_size
    if size > STREAM_BYTES:
        return stream_text(path, data)
    raw = read_bytes(path, data)
    if looks_binary(raw[:8192]):
        raise BinaryFile("binary file, not text")
    text, warning = decode(raw)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ExtractError("no text: the file holds only whitespace")
    pages = split_text(text)
    result = Extracted(pages=pages, extractor="text")
    if warning:
        result.warnings.append(warning)
    if path.suffix.lower() in {".md", ".markdown"}:
        result.outline = markdown_outline(pages)
    return result


def decoded_chunks(fh: BinaryIO, head: bytes, how: Decoding, late: list[int] | None = None) -> Iterator[str]:
    """The stream as text, chunk by chunk, with universal newlines (a \r\n split between two
    chunks included). A stream judged UTF-8 from its head decodes later non-UTF-8 bytes as cp1252
    and counts them in `late[0]`."""
    errors = how.errors
    if how.codec == "utf-8" and errors == "replace":
        errors = fallback_handler("cp1252")
    used_before = FALLBACK_USES[errors]
    decoder = codecs.getincrementaldecoder(how.codec)(errors=errors)
    carry = ""
    data = head
    while True:
        final = not data
        text = carry + decoder.decode(data, final=final)
        carry = ""
        if text.endswith("\r") and not final:
            text, carry = text[:-1], "\r"
        if text:
            yield text.replace("\r\n", "\n").replace("\r", "\n")
        if final:
            if late is not None and how.errors == "replace":
                late[0] = FALLBACK_USES[errors] - used_before
            return
        data = fh.read(CHUNK_BYTES)


def stream_text(path: Path, data: bytes | None = None) -> Extracted:
    fh: BinaryIO = io.BytesIO(data) if data is not None else open(path, "rb")
    head = fh.read(SNIFF_BYTES)
    if looks_binary(head[:8192]):
        fh.close()
        raise BinaryFile("binary file, not text")
    how = sniff(head, partial=True)
    markdown = path.suffix.lower() in {".md", ".markdown"}
    late = [0]
    outline = MarkdownOutline()

    def pages() -> Iterator[str]:
        lines, sections = Lines(), Sections()
        number, seen_text = 0, False
        try:
            for chunk in decoded_chunks(fh, head, how, late):
                seen_text = seen_text or bool(chunk.strip())
                for line in lines.feed(chunk):
                    for page in sections.add(line):
                        number += 1
                        if markdown:
                            outline.page(number, page)
                        yield page
            for line in lines.close():
                for page in sections.add(line):
                    number += 1
                    if markdown:
                        outline.page(number, page)
                    yield page
            for page in sections.close():
                number += 1
                if markdown:
                    outline.page(number, page)
                yield page
        finally:
            fh.close()
        if not seen_text:
            raise ExtractError("no text: the file holds only whitespace")
        if late[0]:  # meta.json is written after the last page: the warning still reaches it
            result.warnings.append(f"mixed encodings: UTF-8 in the first MB, but {late[0]:,} byte runs after it "
                                   "were not UTF-8 and were decoded as cp1252")

    result = Extracted(pages=pages(), extractor="text (streamed)", outline=outline.entries)
    if how.warning:
        result.warnings.append(how.warning)
    return result


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    result = extract_text(path, data)
    if path.suffix.lower() in CODE_SUFFIXES and isinstance(result.pages, list):
        result.extra["page_lines"] = first_lines(result.pages)  # code is cited as path:line
    return result


def first_lines(pages: list[str]) -> list[int]:
    """The line number each page starts at (1-based), so a line of the file maps to a page."""
    starts, line = [], 1
    for page in pages:
        starts.append(line)
        line += page.count("\n")
    return starts
