"""PDF: one text page per PDF page.

pypdfium2 (PDFium) extracts text, outline and metadata: about 20x faster than pypdf, and it opens
PDFs encrypted with an empty user password by itself. pypdf is the fallback for files PDFium
cannot open, and for pages it fails on.

Pages are extracted in forked workers (pdf_workers.py), each page's text read by pdf_text.py:
table rows keep ` | ` between cells, broken lines are rebuilt from character boxes. Pages
without a usable text layer are OCRed (`--ocr auto`, the default; `always`; `never`) when the
OCR engine is installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Extracted, Options, OutlineEntry, pages_named
from rlmcli.workspace.extract.pdf_workers import PAGE_SECONDS, Run, can_fork, in_process

OCR_DPI = 150
LETTER_SPACED_SHARE = 0.05  # a page whose words stand this much in one-letter runs is named in a warning
# Characters that mean the text layer is garbage: replacement, private use, controls.
_GARBLED = re.compile(r"[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass
class _Ahead:
    key: tuple[str, int, int]  # path, size, mtime: the file it was started on
    run: Run
    outline: list[OutlineEntry]
    metadata: dict[str, str]


_ahead: _Ahead | None = None


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def start_ahead(path: Path) -> None:
    """Start extracting a PDF's text before it is asked for, so the caller (an ingest committing
    the previous document) works while the workers extract. At most one runs ahead; a later
    `extract_pdf` of the same unchanged file collects it. Best effort: any problem is left for
    that call to find and name."""
    global _ahead
    drop_ahead()
    if not can_fork():
        return
    try:
        key = _key(path)
        pdf = _open_pdfium(path)
    except (OSError, ExtractError):
        return
    if pdf is None:
        return
    try:
        total, outline = len(pdf), _toc(pdf)
        metadata = {k.lower(): str(v) for k, v in pdf.get_metadata_dict(skip_empty=True).items()}
    except Exception:  # noqa: BLE001 - the real extraction names it
        return
    finally:
        pdf.close()
    if total:
        _ahead = _Ahead(key, Run(str(path), total), outline, metadata)


def drop_ahead() -> None:
    """Stop an extraction started ahead that nobody collected."""
    global _ahead
    if _ahead is not None:
        _ahead.run.stop()
        _ahead = None


def _take_ahead(path: Path) -> _Ahead | None:
    global _ahead
    ahead, _ahead = _ahead, None
    if ahead is None:
        return None
    try:
        if ahead.key == _key(path):
            return ahead
    except OSError:
        pass
    ahead.run.stop()
    return None


# ---- the document -------------------------------------------------------------------------------

def _is_garbled(text: str) -> bool:
    visible = len(text) - text.count(" ") - text.count("\n")
    if visible < 20:
        return False
    bad = len(_GARBLED.findall(text)) + 5 * text.count("(cid:")
    return bad / visible > 0.3


def _open_pdfium(path: Path) -> Any:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
            raise ExtractError("encrypted PDF: a password is required to open it") from None
        return None


def _toc(pdf: Any) -> list[OutlineEntry]:
    outline = []
    try:
        for item in pdf.get_toc(max_depth=8):
            dest = item.get_dest()
            index = dest.get_index() if dest is not None else None
            title = " ".join((item.get_title() or "").split())
            if title and index is not None:
                outline.append(OutlineEntry(item.level + 1, index + 1, title))
    except Exception:  # noqa: BLE001 - a broken outline is not worth failing the document for
        return outline
    return outline


def _extract_pdfium(path: Path, pdf: Any, options: Options, ahead: _Ahead | None = None) -> Extracted:
    if ahead is not None:
        n, outline, metadata = ahead.run.total, ahead.outline, ahead.metadata
    else:
        n, outline = len(pdf), _toc(pdf)
        metadata = {k.lower(): str(v) for k, v in pdf.get_metadata_dict(skip_empty=True).items()}
        pdf.close()
    on_page = (lambda done: options.on_page(done, n)) if options.on_page is not None else None  # type: ignore[misc]
    if ahead is not None:
        results = ahead.run.collect(on_page)
    elif can_fork():
        results = Run(str(path), n).collect(on_page)
    else:
        results = in_process(str(path), n, on_page)
    pages = [r.text for r in results]
    failed = [i for i, r in enumerate(results) if r.problem]
    warnings = []
    timed_out = [i + 1 for i, r in enumerate(results) if r.timed_out]
    if timed_out:
        warnings.append(f"extracting {_pages(timed_out)} took over {PAGE_SECONDS:g} s and was stopped")
    if failed:
        _fill_with_pypdf(path, pages, [i for i in failed if i + 1 not in timed_out])
    spaced = [i + 1 for i, r in enumerate(results) if r.spaced > LETTER_SPACED_SHARE]
    return Extracted(pages=pages, extractor="pypdfium2", outline=outline, metadata=metadata, warnings=warnings,
                     extra={"letter_spaced_pages": spaced} if spaced else {})


def _fill_with_pypdf(path: Path, pages: list[str], indexes: list[int]) -> None:
    if not indexes:
        return
    try:
        reader = _pypdf_reader(path)
    except ExtractError:
        return
    for i in indexes:
        try:
            pages[i] = reader.pages[i].extract_text() or ""
        except Exception:  # noqa: BLE001 - a broken file raises many types of error
            pages[i] = ""


def _pypdf_reader(path: Path) -> Any:
    import logging

    import pypdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            try:
                ok = bool(reader.decrypt(""))
            except Exception:  # noqa: BLE001 - a broken file raises many types of error
                ok = False
            if not ok:
                raise ExtractError("encrypted PDF: a password is required to open it")
        len(reader.pages)
    except ExtractError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken file raises many types of error
        raise ExtractError(f"corrupt or truncated PDF ({type(exc).__name__}: {exc})") from None
    return reader


def _extract_pypdf(path: Path) -> Extracted:
    reader = _pypdf_reader(path)
    pages: list[str] = []
    for page in reader.pages:
        try:
            pages.append((page.extract_text() or "").replace("\r\n", "\n"))
        except Exception:  # noqa: BLE001 - a broken file raises many types of error
            pages.append("")
    outline: list[OutlineEntry] = []

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                outline.append(OutlineEntry(level, reader.get_destination_page_number(item) + 1, str(item.title)))
            except Exception:  # noqa: BLE001 - a broken file raises many types of error
                continue

    try:
        walk(reader.outline, 1)
    except Exception:  # noqa: BLE001 - a broken file raises many types of error
        pass
    metadata = {k.lstrip("/").lower(): str(v) for k, v in (reader.metadata or {}).items() if v}
    return Extracted(pages=pages, extractor="pypdf", outline=outline, metadata=metadata)


def _pages(numbers: list[int]) -> str:
    return pages_named(numbers)


def _ocr(path: Path, pages: list[str], wanted: list[int], result: Extracted, always: bool) -> list[int]:
    """OCR the pages `wanted` (1-based); a page takes the OCR text when it holds more words than
    its text layer (any words, with --ocr always). Returns the pages OCR replaced (marked in
    meta.json and the manifest)."""
    from rlmcli.workspace.extract import ocr

    texts = ocr.pdf_pages(path, wanted, dpi=OCR_DPI)
    done = []
    for number, text in zip(wanted, texts, strict=True):
        if text.strip() and (always or len(text.split()) > len(pages[number - 1].split())):
            pages[number - 1] = text
            done.append(number)
    if done:
        result.extra["ocr_pages"] = done  # said as a note at ingest, not a warning: OCR worked
    return done


def extract_pdf(path: Path, options: Options | None = None) -> Extracted:
    options = options or Options()
    if path.stat().st_size == 0:
        raise ExtractError("empty file (0 bytes)")
    ahead = _take_ahead(path)
    pdf = _open_pdfium(path) if ahead is None else None
    pdfium_opened = ahead is not None or pdf is not None
    if pdfium_opened:
        result = _extract_pdfium(path, pdf, options, ahead)
    else:
        result = _extract_pypdf(path)
        result.warnings.append("PDFium could not open this file; text extracted with pypdf")
    pages = result.pages
    assert isinstance(pages, list)
    if not pages:
        raise ExtractError("PDF has no pages")
    garbled = [i + 1 for i, t in enumerate(pages) if t.strip() and _is_garbled(t)]
    for number in garbled:  # keep what is legible; control characters only confuse a model
        pages[number - 1] = _GARBLED.sub("", pages[number - 1])
    empty = [i + 1 for i, t in enumerate(pages) if not t.strip() and i + 1 not in garbled]  # garbled ones are named so
    wanted = list(range(1, len(pages) + 1)) if options.ocr == "always" else sorted(set(empty) | set(garbled))
    why = ""
    if options.ocr == "never":
        wanted, why = [], "OCR is off (--ocr never)"
    elif wanted and not pdfium_opened:
        wanted, why = [], "OCR needs PDFium to render the pages"
    elif wanted:
        from rlmcli.workspace.extract import ocr

        problem = ocr.unavailable()
        if problem is not None:
            wanted, why = [], f"OCR is not installed ({problem})"
    done = set(_ocr(path, pages, wanted, result, options.ocr == "always")) if wanted else set()
    note = f"; {why}" if why else ""
    still_empty = [n for n in empty if n not in done]
    if still_empty and len(still_empty) == len(pages):
        result.warnings.append(f"no text on any page (scanned or image-only PDF?){note or ', even by OCR'}")
    elif still_empty:
        result.warnings.append(f"no text on {_pages(still_empty)} (scanned or blank?){note or ', even by OCR'}")
    still_garbled = [n for n in garbled if n not in done]
    if still_garbled:
        result.warnings.append(f"garbled text on {_pages(still_garbled)} (broken font encoding?)")
    spaced = [n for n in result.extra.get("letter_spaced_pages", []) if n not in done]
    if spaced:
        result.warnings.append(f"letter-spaced text on {_pages(spaced)} (words drawn a letter at a time; "
                               "search and quotes may miss them)")
    return result


def extract(path: Path, data: bytes | None, options: Any, kind: str) -> Extracted:
    from rlmcli.workspace.extract.files import on_path

    return on_path(lambda p: extract_pdf(p, options), path, data, ".pdf")
