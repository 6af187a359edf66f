"""Extractors: each turns one input file into pages of plain text.

Every extractor returns an `Extracted`; it raises `ExtractError` with a message that says what
is wrong with the file (never a raw library traceback).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PDF_EXT = {".pdf"}
DOCX_EXT = {".docx", ".docm", ".dotx"}
HTML_EXT = {".html", ".htm", ".xhtml"}
TEXT_EXT = {
    # prose and data
    ".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".org", ".tex", ".csv", ".tsv",
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
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ico", ".icns",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".jar", ".war",
    ".exe", ".dll", ".so", ".dylib", ".o", ".a", ".lib", ".class", ".pyc", ".pyo", ".whl",
    ".mp3", ".mp4", ".wav", ".flac", ".ogg", ".mov", ".avi", ".mkv", ".webm",
    ".ttf", ".otf", ".woff", ".woff2", ".eot", ".sqlite", ".db", ".bin", ".dat", ".pkl",
    ".npy", ".npz", ".parquet", ".doc", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".epub",
}


@dataclass
class OutlineEntry:
    level: int  # 1 = top level
    page: int  # 1-based
    title: str


@dataclass
class Extracted:
    pages: list[str] | Iterator[str]  # an iterator: streamed, spooled to disk page by page
    extractor: str
    outline: list[OutlineEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def detect_type(path: Path, head: bytes) -> str:
    """'pdf', 'docx', 'html', 'text' or 'binary', from the name and the first bytes."""
    ext = path.suffix.lower()
    if head.startswith(b"%PDF") or ext in PDF_EXT:
        return "pdf"
    if ext in DOCX_EXT:
        return "docx"
    if ext in HTML_EXT:
        return "html"
    if ext in BINARY_EXT:
        return "binary"
    from rlmcli.workspace.extract.text import looks_binary

    if looks_binary(head):
        return "binary"
    if ext in TEXT_EXT:
        return "text"
    lowered = head[:512].lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "text"


def extract(path: Path, kind: str, data: bytes | None = None) -> Extracted:
    """Run the extractor for `kind` on `path` (or on `data` already read, for stdin)."""
    if kind == "pdf":
        from rlmcli.workspace.extract.pdf import extract_pdf

        return extract_pdf(path)
    if kind == "docx":
        from rlmcli.workspace.extract.docx import extract_docx

        return extract_docx(path)
    if kind == "html":
        from rlmcli.workspace.extract.html import extract_html

        return extract_html(path, data)
    from rlmcli.workspace.extract.text import extract_text

    return extract_text(path, data)
