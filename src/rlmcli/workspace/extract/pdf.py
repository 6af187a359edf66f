"""PDF: one text page per PDF page.

pypdfium2 (PDFium) extracts text, outline and metadata: about 20x faster than pypdf, and it opens
PDFs encrypted with an empty user password by itself. pypdf is the fallback for files PDFium
cannot open, and for pages it fails on.

Pages are extracted by forked worker processes that report each page as it is done: a page that
takes longer than PAGE_SECONDS (a malicious or broken content stream) costs its worker, which is
killed and replaced, and the page is named in a warning; every page done shows in the progress
bar. Tables keep a row per line with ` | ` between cells. Pages without a usable text layer are
OCRed (`--ocr auto`, the default; `always`; `never`) when the OCR engine is installed.
"""

from __future__ import annotations

import marshal
import os
import re
import select
import signal
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlmcli.errors import ExtractError
from rlmcli.forking import fork_helper, sigint_held
from rlmcli.workspace.extract import Extracted, Options, OutlineEntry

PARALLEL_MIN_PAGES = 300  # below this, a second worker only competes with the tokenizer helper for 2 cores
PAGE_SECONDS = 30.0  # one page's extraction may take this long
OCR_DPI = 150
# Characters that mean the text layer is garbage: replacement, private use, controls.
_GARBLED = re.compile(r"[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f]")


def _clean(text: str) -> str:
    # PDFium marks hyphens it considers soft with \x02; pdftotext prints them as '-'.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x02", "-").replace("\ufffe", "-")


# ---- one page's text, tables kept as rows ------------------------------------------------------

Box = tuple[float, float, float, float]  # left, bottom, right, top


def _lines(boxes: list[Box]) -> list[list[int]]:
    """Indexes of boxes grouped into lines (top to bottom), each line's boxes left to right."""
    order = sorted(range(len(boxes)), key=lambda i: (-(boxes[i][1] + boxes[i][3]) / 2, boxes[i][0]))
    lines: list[list[int]] = []
    for i in order:
        box = boxes[i]
        middle, height = (box[1] + box[3]) / 2, box[3] - box[1]
        if lines:
            last = boxes[lines[-1][0]]
            if abs((last[1] + last[3]) / 2 - middle) < max(2.0, 0.5 * max(height, last[3] - last[1])):
                lines[-1].append(i)
                continue
        lines.append([i])
    for line in lines:
        line.sort(key=lambda i: boxes[i][0])
    return lines


def _cells(boxes: list[Box], line: list[int]) -> list[tuple[float, float]]:
    """(left, right) of each cell of a line: a gap wider than a line's height starts a cell."""
    cells = [(boxes[line[0]][0], boxes[line[0]][2])]
    for prev, cur in zip(line, line[1:], strict=False):
        height = max(boxes[cur][3] - boxes[cur][1], 4.0)
        if boxes[cur][0] - boxes[prev][2] > 1.2 * height:
            cells.append((boxes[cur][0], boxes[cur][2]))
        else:
            cells[-1] = (cells[-1][0], boxes[cur][2])
    return cells


def _table_text(textpage: Any) -> str | None:  # noqa: C901 - one pass, kept together
    """The page rebuilt line by line from PDFium's text rectangles when it holds a table: three or
    more consecutive lines of several cells sharing a column edge. None otherwise. Geometry comes
    first; the text of each rectangle is fetched only once a table is found."""
    count = textpage.count_rects()
    if count < 6:
        return None
    boxes: list[Box] = [tuple(textpage.get_rect(i)) for i in range(count)]
    lines = _lines(boxes)
    cells = [_cells(boxes, line) for line in lines]
    span = max(b[2] for b in boxes) - min(b[0] for b in boxes)

    def tabular(row: list[tuple[float, float]]) -> bool:
        # Two wide cells side by side are columns of prose, not a table: a table's cells are
        # narrow, or one wide description beside a narrow term.
        return len(row) > 1 and sum(right - left > 0.38 * span for left, right in row) <= 1

    run = best = 0
    for i, row in enumerate(cells):
        shared = i > 0 and tabular(row) and tabular(cells[i - 1]) and any(
            abs(x[0] - y[0]) < 3 for x in row[1:] for y in cells[i - 1][1:])
        run = run + 1 if shared else (1 if tabular(row) else 0)
        best = max(best, run)
    if best < 3:
        return None
    starts = [[left for left, _ in row] for row in cells]
    rows: list[list[str]] = []
    for line, edges in zip(lines, starts, strict=True):
        texts: list[list[str]] = []
        for i in line:
            text = " ".join(textpage.get_text_bounded(*boxes[i]).split())
            if not text:
                continue
            if not texts or boxes[i][0] in edges:
                texts.append([text])
            else:
                texts[-1].append(text)
        rows.append([" ".join(cell) for cell in texts])
    multi = [r for r in rows if len(r) > 1]
    prose = sum(sum(len(cell.split()) >= 4 for cell in r) >= 2 for r in multi)
    if prose >= 0.6 * len(multi):  # sentences side by side: columns of prose, not a table
        return None
    return "\n".join(" | ".join(r) for r in rows if r) + "\n"


def _page_text(pdf: Any, index: int) -> str:
    page = pdf[index]
    textpage = page.get_textpage()
    try:
        text = _clean(textpage.get_text_bounded())
        if textpage.count_rects() > 1.5 * (text.count("\n") + 1):  # many more runs than lines: maybe cells
            table = _table_text(textpage)
            if table is not None:
                text = _clean(table)
    finally:
        textpage.close()
        page.close()
    return text


# ---- guarded extraction in forked workers -------------------------------------------------------

def _frame(obj: Any) -> bytes:
    data = marshal.dumps(obj)
    return struct.pack(">I", len(data)) + data


def _worker(path: str, indexes: list[int], wfd: int) -> None:
    """The forked worker: one frame (index, text, problem) per page."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path)
    for index in indexes:
        try:
            result: tuple[int, str, str | None] = (index, _page_text(pdf, index), None)
        except Exception as exc:  # one bad page must not lose the others
            result = (index, "", f"{type(exc).__name__}: {exc}")
        data = _frame(result)
        view = memoryview(data)
        while view:
            view = view[os.write(wfd, view):]


class _Worker:
    def __init__(self, path: str, indexes: list[int]) -> None:
        self.todo = list(indexes)
        rfd, wfd = os.pipe()
        pid = fork_helper()  # Ctrl-C is the parent's to handle
        if pid == 0:  # the worker
            try:
                os.close(rfd)
                _worker(path, indexes, wfd)
            finally:
                os._exit(0)
        os.close(wfd)
        self.pid, self.fd, self.buffer = pid, rfd, b""
        self.since = time.monotonic()

    @classmethod
    def spawn(cls, workers: list[_Worker], path: str, indexes: list[int]) -> None:
        """Start a worker and list it before Ctrl-C can land, so the caller's cleanup stops it."""
        with sigint_held():
            workers.append(cls(path, indexes))

    def read(self) -> list[tuple[int, str, str | None]]:
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise EOFError
        self.buffer += chunk
        out = []
        while len(self.buffer) >= 4:
            (length,) = struct.unpack(">I", self.buffer[:4])
            if len(self.buffer) < 4 + length:
                break
            result = marshal.loads(self.buffer[4:4 + length])
            self.buffer = self.buffer[4 + length:]
            out.append(result)
            self.todo.remove(result[0])
            self.since = time.monotonic()
        return out

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def _guarded(path: Path, total: int, on_page: Callable[[int], None] | None) -> list[tuple[str, str | None]]:
    """(text, problem) for every page, each page bounded by PAGE_SECONDS."""
    results: list[tuple[str, str | None] | None] = [None] * total
    share = 2 if total >= PARALLEL_MIN_PAGES and (os.cpu_count() or 1) > 1 else 1
    chunks = [list(range(total))[i::share] for i in range(share)]
    workers: list[_Worker] = []
    done = 0
    try:
        for chunk in chunks:
            if chunk:
                _Worker.spawn(workers, str(path), chunk)
        while workers:
            ready, _, _ = select.select([w.fd for w in workers], [], [], 0.5)
            now = time.monotonic()
            for worker in list(workers):
                if worker.fd in ready:
                    try:
                        for index, text, problem in worker.read():
                            results[index] = (text, problem)
                            done += 1
                            if on_page is not None:
                                on_page(done)
                    except EOFError:
                        worker.stop()
                        workers.remove(worker)
                        for index in worker.todo:  # died mid-document: the rest fall to pypdf
                            results[index] = ("", "the extraction process died")
                        continue
                if worker.todo and now - worker.since > PAGE_SECONDS:
                    stuck = worker.todo[0]
                    results[stuck] = ("", f"timed out after {PAGE_SECONDS:g} s")
                    worker.stop()
                    workers.remove(worker)
                    if worker.todo[1:]:
                        _Worker.spawn(workers, str(path), worker.todo[1:])
                elif not worker.todo:
                    worker.stop()
                    workers.remove(worker)
    finally:
        for worker in workers:
            worker.stop()
    return [r if r is not None else ("", "not extracted") for r in results]


def _in_process(path: Path, total: int, on_page: Callable[[int], None] | None) -> list[tuple[str, str | None]]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    out: list[tuple[str, str | None]] = []
    try:
        for index in range(total):
            try:
                out.append((_page_text(pdf, index), None))
            except Exception as exc:  # one bad page must not lose the others
                out.append(("", f"{type(exc).__name__}: {exc}"))
            if on_page is not None:
                on_page(index + 1)
    finally:
        pdf.close()
    return out


def _can_fork() -> bool:
    """Forking while another thread runs could leave the child waiting on a lock for ever."""
    threading = sys.modules.get("threading")
    return hasattr(os, "fork") and (threading is None or threading.active_count() == 1)


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
        if "password" in str(exc).lower():
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
    except Exception:  # a broken outline is not worth failing the document for
        return outline
    return outline


def _extract_pdfium(path: Path, pdf: Any, options: Options) -> Extracted:
    n = len(pdf)
    outline = _toc(pdf)
    metadata = {k.lower(): str(v) for k, v in pdf.get_metadata_dict(skip_empty=True).items()}
    pdf.close()
    on_page = (lambda done: options.on_page(done, n)) if options.on_page is not None else None  # type: ignore[misc]
    results = _guarded(path, n, on_page) if _can_fork() else _in_process(path, n, on_page)
    pages = [text for text, _ in results]
    failed = [i for i, (_, problem) in enumerate(results) if problem]
    warnings = []
    timed_out = [i + 1 for i, (_, problem) in enumerate(results) if problem and problem.startswith("timed out")]
    if timed_out:
        warnings.append(f"extracting {_pages(timed_out)} took over {PAGE_SECONDS:g} s and was stopped")
    if failed:
        _fill_with_pypdf(path, pages, [i for i in failed if i + 1 not in timed_out])
    return Extracted(pages=pages, extractor="pypdfium2", outline=outline, metadata=metadata, warnings=warnings)


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
        except Exception:
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
            except Exception:
                ok = False
            if not ok:
                raise ExtractError("encrypted PDF: a password is required to open it")
        len(reader.pages)
    except ExtractError:
        raise
    except Exception as exc:
        raise ExtractError(f"corrupt or truncated PDF ({type(exc).__name__}: {exc})") from None
    return reader


def _extract_pypdf(path: Path) -> Extracted:
    reader = _pypdf_reader(path)
    pages: list[str] = []
    for page in reader.pages:
        try:
            pages.append((page.extract_text() or "").replace("\r\n", "\n"))
        except Exception:
            pages.append("")
    outline: list[OutlineEntry] = []

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                outline.append(OutlineEntry(level, reader.get_destination_page_number(item) + 1, str(item.title)))
            except Exception:
                continue

    try:
        walk(reader.outline, 1)
    except Exception:
        pass
    metadata = {k.lstrip("/").lower(): str(v) for k, v in (reader.metadata or {}).items() if v}
    return Extracted(pages=pages, extractor="pypdf", outline=outline, metadata=metadata)


def _pages(numbers: list[int]) -> str:
    return ("page " if len(numbers) == 1 else "pages ") + page_list(numbers)


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
        result.extra["ocr_pages"] = done
        result.warnings.append(f"OCR: text recognised on {_pages(done)}")
    return done


def extract_pdf(path: Path, options: Options | None = None) -> Extracted:
    options = options or Options()
    if path.stat().st_size == 0:
        raise ExtractError("empty file (0 bytes)")
    pdf = _open_pdfium(path)
    if pdf is not None:
        result = _extract_pdfium(path, pdf, options)
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
    empty = [i + 1 for i, t in enumerate(pages) if not t.strip()]
    wanted = list(range(1, len(pages) + 1)) if options.ocr == "always" else sorted(set(empty) | set(garbled))
    why = ""
    if options.ocr == "never":
        wanted, why = [], "OCR is off (--ocr never)"
    elif wanted and pdf is None:
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
    return result


def extract(path: Path, data: bytes | None, options: Any, kind: str) -> Extracted:
    from rlmcli.workspace.extract.files import on_path

    return on_path(lambda p: extract_pdf(p, options), path, data, ".pdf")
