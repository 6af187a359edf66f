"""Plain text, Markdown, data files and source code."""

from __future__ import annotations

import codecs
from pathlib import Path

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Extracted
from rlmcli.workspace.extract.split import markdown_outline, split_text

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Bytes that never occur in text, apart from the usual \t \n \f \r and ESC.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))


def looks_binary(head: bytes) -> bool:
    """A NUL byte, or many control bytes, in the first few KB means binary (as git decides)."""
    if not head:
        return False
    if any(head.startswith(bom) for bom, _ in _BOMS):
        return False
    if b"\x00" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROL))
    return controls / len(head) > 0.10


def decode(data: bytes) -> tuple[str, str | None]:
    """Text and, when it was not UTF-8, a warning naming the encoding that was detected."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data.decode(codec, errors="replace"), None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[:1_000_000]).best()
    codec = best.encoding if best is not None else "latin-1"
    try:
        text = data.decode(codec, errors="replace")
    except LookupError:
        codec, text = "latin-1", data.decode("latin-1")
    return text, f"not UTF-8: decoded as {codec}"


def read_bytes(path: Path, data: bytes | None) -> bytes:
    if data is None:
        data = path.read_bytes()
    if not data:
        raise ExtractError("empty file (0 bytes)")
    return data


def extract_text(path: Path, data: bytes | None = None) -> Extracted:
    raw = read_bytes(path, data)
    if looks_binary(raw[:8192]):
        raise ExtractError("binary file, not text")
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
