"""Extractors: each turns one input file into pages of plain text.

A format is one module here plus one line in FORMATS. `detect_type` picks the format from the
first bytes (magic numbers and, for zip containers, the parts they hold) before the name, so a
PDF called `.txt` or a DOCX called `.pdf` is still read as what it is. Every extractor returns an
`Extracted`, or raises `ExtractError` saying what is wrong with the file (never a library
traceback). Extractor modules are imported only when a file of theirs is ingested.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OutlineEntry:
    level: int  # 1 = top level
    page: int  # 1-based
    title: str


@dataclass
class Attachment:
    """A file found inside another (a mail's attachment): ingested as a document of its own."""

    name: str
    data: bytes


@dataclass
class Extracted:
    pages: list[str] | Iterator[str]  # an iterator: streamed, spooled to disk page by page
    extractor: str
    outline: list[OutlineEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # more meta.json fields (ocr_pages, page_images, ...)


@dataclass
class Options:
    ocr: str = "auto"  # auto | always | never
    on_page: Callable[[int, int], None] | None = None  # (pages done, pages in all) for long documents
    explicit: bool = True  # named on the command line; False: found in a folder or an archive


@dataclass(frozen=True)
class Format:
    kind: str
    module: str  # rlmcli.workspace.extract.<module>.extract(path, data, options) -> Extracted
    extensions: frozenset[str]
    container: str = ""  # a zip's telltale: a part name prefix, or the `mimetype` part's text


def page_list(numbers: list[int]) -> str:
    """1,2,3,7,9,10 -> '1-3, 7, 9-10'."""
    spans: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [-1]:
        if n == prev + 1:
            prev = n
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ", ".join(spans)


def pages_named(numbers: list[int]) -> str:
    """'page 3' or 'pages 1-3, 7'."""
    return ("page " if len(numbers) == 1 else "pages ") + page_list(numbers)


def _ext(*names: str) -> frozenset[str]:
    return frozenset(names)


FORMATS = (
    Format("pdf", "pdf", _ext(".pdf")),
    Format("docx", "docx", _ext(".docx", ".docm", ".dotx"), "word/"),
    Format("pptx", "pptx", _ext(".pptx", ".pptm", ".potx"), "ppt/"),
    Format("xlsx", "xlsx", _ext(".xlsx", ".xlsm", ".xltx"), "xl/"),
    Format("epub", "epub", _ext(".epub"), "application/epub+zip"),
    Format("odt", "odf", _ext(".odt", ".ott"), "application/vnd.oasis.opendocument.text"),
    Format("ods", "odf", _ext(".ods", ".ots"), "application/vnd.oasis.opendocument.spreadsheet"),
    Format("odp", "odf", _ext(".odp", ".otp"), "application/vnd.oasis.opendocument.presentation"),
    Format("eml", "mail", _ext(".eml")),
    Format("mbox", "mail", _ext(".mbox", ".mbx")),
    Format("msg", "msg", _ext(".msg")),
    Format("csv", "csvfile", _ext(".csv", ".tsv")),
    Format("html", "html", _ext(".html", ".htm", ".xhtml")),
    Format("png", "image", _ext(".png")),
    Format("jpeg", "image", _ext(".jpg", ".jpeg", ".jpe", ".jfif")),
    Format("tiff", "image", _ext(".tif", ".tiff")),
    Format("zip", "archive", _ext(".zip")),
    Format("text", "text", frozenset()),
)
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))
BY_KIND = {f.kind: f for f in FORMATS}

TEXT_EXT = {
    # prose and data
    ".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".org", ".tex",
    ".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".xml",
    ".log", ".sql", ".properties", ".env.example",
    # source code
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".kts", ".scala",
    ".go", ".rs", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".m", ".mm", ".swift",
    ".cs", ".fs", ".vb", ".rb", ".php", ".pl", ".pm", ".r", ".jl", ".lua", ".sh", ".bash",
    ".zsh", ".fish", ".ps1", ".bat", ".cmd", ".css", ".scss", ".less", ".vue", ".svelte",
    ".ex", ".exs", ".erl", ".hrl", ".hs", ".ml", ".mli", ".clj", ".cljs", ".dart", ".zig",
    ".nim", ".proto", ".graphql", ".gradle", ".cmake", ".mk", ".dockerfile", ".tf", ".hcl",
}
# Formats we know are binary: skipped quietly in directories, named when given explicitly.
BINARY_EXT = {
    ".gif", ".bmp", ".webp", ".ico", ".icns",
    ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".jar", ".war", ".apk", ".xpi", ".nupkg",
    ".exe", ".dll", ".so", ".dylib", ".o", ".a", ".lib", ".class", ".pyc", ".pyo", ".whl",
    ".mp3", ".mp4", ".wav", ".flac", ".ogg", ".mov", ".avi", ".mkv", ".webm",
    ".ttf", ".otf", ".woff", ".woff2", ".eot", ".sqlite", ".db", ".bin", ".dat", ".pkl",
    ".npy", ".npz", ".parquet", ".doc", ".xls", ".ppt",
}
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_MAIL_HEADERS = (b"from:", b"received:", b"return-path:", b"message-id:", b"mime-version:", b"delivered-to:",
                 b"date:", b"subject:", b"to:", b"x-")


def _zip_kind(path: Path | None, data: bytes | None) -> str | None:
    """Which zip-based format a zip container is, from its parts (None: a plain zip)."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as archive:  # type: ignore[arg-type]
            names = archive.namelist()
            mimetype = archive.read("mimetype")[:100].decode("ascii", "replace").strip() if "mimetype" in names else ""
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None
    for fmt in FORMATS:
        if not fmt.container:
            continue
        if fmt.container.endswith("/") and any(n.startswith(fmt.container) for n in names):
            return fmt.kind
        if mimetype and mimetype == fmt.container:
            return fmt.kind
    return None


def detect_type(path: Path, head: bytes, data: bytes | None = None) -> str:
    """The format's kind ('pdf', 'docx', 'eml', 'text', ...) or 'binary', from the first bytes,
    the parts of a zip container, and the name."""
    ext = path.suffix.lower()
    by_ext = next((f.kind for f in FORMATS if ext in f.extensions), None)
    if head.startswith(b"%PDF") or (by_ext == "pdf" and b"%PDF" in head[:1024]):
        return "pdf"
    image = next((kind for magic, kind in _IMAGE_MAGIC if head.startswith(magic)), None)
    if image is not None:
        return image
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip (an empty one has only its end record)
        kind = _zip_kind(path if data is None else None, data)
        if kind is not None:
            return kind
        if by_ext in ("docx", "pptx", "xlsx", "epub", "odt", "ods", "odp"):
            return by_ext  # the extractor says what it lacks
        return "binary" if ext in BINARY_EXT else "zip"  # a .jar or .whl is a zip too, but not a document's
    if head.startswith(_OLE):
        return "msg" if ext == ".msg" else (by_ext or "binary") if by_ext in ("docx", "pptx", "xlsx") else "binary"
    if by_ext in ("docx", "pptx", "xlsx", "epub", "odt", "ods", "odp", "msg", "pdf", "png", "jpeg", "tiff", "zip"):
        return by_ext  # the extractor names what is wrong with it (truncated, not a zip, ...)
    if ext in BINARY_EXT:
        return "binary"
    from rlmcli.workspace.extract.text import looks_binary

    if looks_binary(head):
        return "binary"
    if by_ext is not None:
        return by_ext
    if head.startswith(b"From ") and b"\n" in head[:200] and _looks_like_mail(head.split(b"\n", 1)[1]):
        return "mbox"
    if ext not in TEXT_EXT and _looks_like_mail(head):
        return "eml"
    if ext in TEXT_EXT:
        return "text"
    lowered = head[:512].lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "text"


def _looks_like_mail(head: bytes) -> bool:
    """At least three RFC 822 header lines before the first blank line."""
    lines = head.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].split(b"\n")[:40]
    headers = [line for line in lines if line and not line[:1].isspace()]
    return len(headers) >= 3 and all(b":" in line[:80] for line in headers[:3]) \
        and sum(line.lower().startswith(_MAIL_HEADERS) for line in headers) >= 2


def extract(path: Path, kind: str, data: bytes | None = None, options: Options | None = None) -> Extracted:
    """Run the extractor for `kind` on `path` (or on `data` already read: stdin, an attachment)."""
    fmt = BY_KIND.get(kind, BY_KIND["text"])
    module = importlib.import_module(f"rlmcli.workspace.extract.{fmt.module}")
    result: Extracted = module.extract(path, data, options or Options(), kind)
    return result
