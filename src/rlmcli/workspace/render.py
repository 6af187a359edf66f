"""Pictures of a page for look(): a PDF page rendered by PDFium, a scanned image's page, or the
images a DOCX section or a PPTX slide shows. Runs in the parent, from the document's original file, which must still be
there unchanged (a workspace keeps text, not originals)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from rlmcli.errors import WorkspaceError
from rlmcli.workspace.reader import WorkspaceReader

MAX_SIDE = 1600  # pixels on the long side: enough to read a chart, small enough to send
MAX_IMAGES = 4  # per look


def _original(reader: WorkspaceReader, doc: str) -> Path:
    rec = reader.records[doc]
    source = rec.source
    path = Path(source)
    if source in ("", "-") or "#" in source or not path.is_file():
        raise WorkspaceError(f"look() needs {doc}'s original file, which is not at {source or '(stdin)'} any more")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != rec.sha256:
        raise WorkspaceError(f"{path} changed since it was ingested: ingest it again before look()")
    return path


def _png(image: object) -> bytes:
    from PIL import Image

    assert isinstance(image, Image.Image)
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG", optimize=True)
    return out.getvalue()


def page_images(reader: WorkspaceReader, doc: str, page: int) -> list[tuple[str, bytes]]:
    """[(mime type, bytes)] showing page `page` of `doc`; WorkspaceError saying why not."""
    reader.page_file(doc, page)  # NoSuchPage for a page that is not there
    kind = reader.records[doc].type
    if kind == "pdf":
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(_original(reader, doc)))
        try:
            pdf_page = pdf[page - 1]
            width, height = pdf_page.get_size()
            scale = min(150 / 72, MAX_SIDE / max(width, height, 1))
            image = pdf_page.render(scale=scale).to_pil()
        finally:
            pdf.close()
        return [("image/png", _png(image))]
    if kind in ("docx", "pptx"):
        parts = (reader.meta(doc).get("page_images") or {}).get(str(page), [])
        if not parts:
            raise WorkspaceError(f"{doc} p.{page} shows no image: read() its text instead")
        out = []
        with zipfile.ZipFile(_original(reader, doc)) as archive:
            for name in parts[:MAX_IMAGES]:
                from PIL import Image

                try:
                    image = Image.open(io.BytesIO(archive.read(name)))
                    image.load()
                except Exception:  # noqa: BLE001 - a format Pillow cannot open (EMF, say)
                    continue
                out.append(("image/png", _png(image)))
        if not out:
            raise WorkspaceError(f"the images on {doc} p.{page} are in a format that cannot be shown")
        return out
    if kind in ("png", "jpeg", "tiff"):  # a scan: the page is the picture (a TIFF's page N is its frame N)
        from PIL import Image

        with Image.open(_original(reader, doc)) as image:
            image.seek(page - 1)
            return [("image/png", _png(image.copy()))]
    raise WorkspaceError(f"look() shows PDF pages, scanned images and the pictures in DOCX and PPTX files; {doc} "
                         f"is {kind}: read() its text")
