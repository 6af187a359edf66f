"""PNG, JPEG and TIFF (a multi-page TIFF too): scans and photographs of pages, read by the same
OCR as scanned PDF pages (ocr.py). Each image, or each page of a TIFF, is a page.

An image where OCR finds no text is not a document: named on the command line, that is an error
saying so; found in a folder or an archive, it is skipped and counted as binary, so a code
tree's icons and photos do not become noise (and tiny ones are not even OCRed).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlmcli.errors import BinaryFile, ExtractError
from rlmcli.workspace.extract import Extracted, Options, pages_named

MAX_PIXELS = 100_000_000  # per page: a 10,000 x 10,000 scan; beyond it a decompression bomb is likelier
MAX_FRAMES = 5_000  # pages of one TIFF
MIN_SIDE = 24  # pixels: smaller than a line of text
NAMES = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}


def _refuse(options: Options, why: str) -> ExtractError:
    """Found in a folder: skipped as a binary file (counted). Named: the reason, as an error."""
    return BinaryFile(f"binary file: {why}") if not options.explicit else ExtractError(why)


def _open(path: Path, data: bytes | None, what: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow refuses larger ones itself (DecompressionBombError)
    try:
        image = Image.open(io.BytesIO(data) if data is not None else path)
        image.size  # noqa: B018 - the header is read
        return image
    except Image.DecompressionBombError as exc:
        raise ExtractError(f"refused: {exc}") from None
    except UnidentifiedImageError:
        raise ExtractError(f"not a valid {what} image (corrupt or truncated?)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ExtractError(f"not a valid {what} image ({type(exc).__name__}: {exc})") from None


def _frames(image: Any, what: str) -> Iterator[Any]:
    """Each page as a greyscale image, one at a time (a 500-page TIFF is never held whole)."""
    from PIL import Image

    for number in range(MAX_FRAMES):
        try:
            image.seek(number)
        except EOFError:
            return
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ExtractError(f"refused: page {number + 1} is {width:,} x {height:,} pixels "
                               f"(the limit is {MAX_PIXELS:,}): a decompression bomb?")
        try:
            frame = image.convert("L")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ExtractError(f"not a valid {what} image: page {number + 1} ({type(exc).__name__}: {exc})") from None
        yield frame


def extract(path: Path, data: bytes | None, options: Options, kind: str) -> Extracted:
    from rlmcli.workspace.extract import ocr

    what = NAMES.get(kind, kind.upper())
    missing = ocr.unavailable()
    if options.ocr == "never" or missing:
        raise _refuse(options, f"a {what} image: its text needs OCR, which is "
                               + ("off (--ocr never)" if options.ocr == "never" else f"not installed ({missing})"))
    try:
        image = _open(path, data, what)
    except ExtractError as exc:
        raise _refuse(options, str(exc)) from None
    with image:
        width, height = image.size
        if min(width, height) < MIN_SIDE:
            raise _refuse(options, f"a {width} x {height} pixel {what} image is too small to hold text")
        frames = int(getattr(image, "n_frames", 1))
        on_page = options.on_page
        texts = ocr.images(_frames(image, what), on_done=(lambda n: on_page(n, frames)) if on_page else None)
    pages = [text.strip() + "\n" if text.strip() else "" for text in texts]
    read = [n for n, text in enumerate(pages, start=1) if text]
    if not read:
        raise _refuse(options, f"no text in this {what} image, even by OCR (a photo or a blank page?)")
    result = Extracted(pages=pages, extractor="tesseract", extra={"ocr_pages": read})
    blank = [n for n, text in enumerate(pages, start=1) if not text]
    if blank:
        result.warnings.append(f"no text on {pages_named(blank)} (a photo or a blank page?), even by OCR")
    if len(pages) >= MAX_FRAMES:
        result.warnings.append(f"only the first {MAX_FRAMES:,} pages were read")
    return result
