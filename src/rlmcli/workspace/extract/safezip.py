"""Zip-based formats (DOCX, PPTX, XLSX, EPUB, ODF) are checked before anything is inflated: a
part's declared size, its compression ratio and the archive's total. zipfile stops reading a
part at its declared size, so the declared sizes bound what inflating can produce."""

from __future__ import annotations

import zipfile
from pathlib import Path

from rlmcli.errors import ExtractError

MAX_PART = 200 << 20  # bytes one part may inflate to
MAX_TOTAL = 1 << 30  # bytes all parts may inflate to
MAX_RATIO = 100  # inflated / compressed, for parts over RATIO_FLOOR
RATIO_FLOOR = 1 << 20  # small parts (styles, relationships) may compress better than that
MAX_PARTS = 20_000


def check_zip(path: Path, what: str) -> None:
    """ExtractError naming the problem when `path` is not a zip, or could inflate into a bomb."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        raise ExtractError(f"not a valid {what} file (not a ZIP archive; corrupt or truncated?)") from None
    except (OSError, ValueError) as exc:
        raise ExtractError(f"not a valid {what} file ({type(exc).__name__}: {exc})") from None
    if len(infos) > MAX_PARTS:
        raise ExtractError(f"refused: the {what} archive has {len(infos):,} parts (the limit is {MAX_PARTS:,})")
    total = 0
    for info in infos:
        size = info.file_size
        total += size
        if size > MAX_PART:
            raise ExtractError(f"refused: part {info.filename} would inflate to {size >> 20:,} MB "
                               f"(the limit is {MAX_PART >> 20} MB per part): a zip bomb?")
        if size > RATIO_FLOOR and size > MAX_RATIO * max(info.compress_size, 1):
            raise ExtractError(f"refused: part {info.filename} inflates {size // max(info.compress_size, 1):,}:1 "
                               f"(the limit is {MAX_RATIO}:1): a zip bomb?")
    if total > MAX_TOTAL:
        raise ExtractError(f"refused: the {what} would inflate to {total >> 20:,} MB in all "
                           f"(the limit is {MAX_TOTAL >> 20:,} MB)")
