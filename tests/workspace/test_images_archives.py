"""Inputs people have (issue #25): PNG, JPEG and TIFF scans read by OCR, ZIP archives opened with
every zip's bounds, and a folder's unreadable files listed without failing the ingest."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

from tests.conftest import FIXTURES, ROOT, run_rlm


def _pages(out: Path, numbers: list[int]) -> list[object]:
    """Pages of the bundled contract as greyscale pictures at 150 dpi: what a scanner gives."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(FIXTURES / "contract.pdf"))
    try:
        return [pdf[n - 1].render(scale=150 / 72, grayscale=True).to_pil() for n in numbers]
    finally:
        pdf.close()


def _docs(ws: Path) -> dict[str, dict[str, object]]:
    return json.loads(run_rlm("ls", "-w", str(ws), "--json").stdout)["documents"]  # type: ignore[no-any-return]


def test_png_jpeg_and_a_multi_page_tiff_are_read_by_ocr_and_marked(tmp_path: Path) -> None:
    fees, termination = _pages(tmp_path, [4, 7])
    fees.save(tmp_path / "fees.png")  # type: ignore[attr-defined]
    termination.convert("RGB").save(tmp_path / "termination.jpg", quality=85)  # type: ignore[attr-defined]
    fees.save(tmp_path / "signed.tiff", save_all=True, append_images=[termination],  # type: ignore[attr-defined]
              compression="tiff_deflate")
    ws = tmp_path / "ws"
    result = run_rlm("ingest", *(str(tmp_path / n) for n in ("fees.png", "termination.jpg", "signed.tiff")), "-w", str(ws))
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "rlm: note: signed.tiff: OCR: text recognised on pages 1-2" in err and "warning" not in err
    docs = _docs(ws)
    assert {d: (r["type"], r["pages"], r.get("ocr_pages")) for d, r in docs.items()} == {
        "fees.png": ("png", 1, [1]), "termination.jpg": ("jpeg", 1, [1]), "signed.tiff": ("tiff", 2, [1, 2])}
    second = run_rlm("show", "signed.tiff", "--page", "2", "-w", str(ws)).stdout.decode()
    assert second.startswith("6. Termination") and "one hundred and eighty (180) days" in second
    found = json.loads(run_rlm("search", "termination fee", "-w", str(ws), "-k", "1", "--json").stdout)["passages"][0]
    assert (found["doc"], found["page"]) in (("signed.tiff", 2), ("termination.jpg", 1))


def test_a_picture_without_text_is_an_error_when_named_and_skipped_in_a_folder(tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "photos" / "grey.png"
    photo.parent.mkdir()
    Image.new("L", (400, 300), 128).save(photo)
    Image.new("L", (16, 16), 0).save(tmp_path / "photos" / "icon.png")  # too small to hold text: not even OCRed
    shutil.copy(FIXTURES / "notes.md", tmp_path / "photos" / "notes.md")
    named = run_rlm("ingest", str(photo), "-w", str(tmp_path / "a"))
    assert named.returncode == 1
    assert "grey.png: no text in this PNG image, even by OCR (a photo or a blank page?)" in named.stderr.decode()
    walked = run_rlm("ingest", str(tmp_path / "photos"), "-w", str(tmp_path / "b"))
    assert walked.returncode == 0 and "skipped 2 binary" in walked.stderr.decode()
    assert list(_docs(tmp_path / "b")) == ["photos-notes.md"]


def _archive(path: Path) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.write(FIXTURES / "page.html", "faq/page.html")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(FIXTURES / "contract.pdf", "deal/contract.pdf")
        z.write(FIXTURES / "notes.md", "deal/notes.md")
        z.write(FIXTURES / "encrypted.docx", "deal/locked.docx")  # unreadable: listed, not fatal
        z.writestr("deal/", b"")
        z.writestr("__MACOSX/deal/._contract.pdf", b"resource fork")
        z.writestr("../../outside.txt", b"a name that climbs out of the archive\n")
        z.writestr("logo.bin", bytes(range(256)) * 8)  # binary: skipped quietly
        z.writestr("nested.zip", inner.getvalue())
    return path


def test_zip_members_are_documents_named_archive_slash_member(tmp_path: Path) -> None:
    bundle = _archive(tmp_path / "bundle.zip")
    ws = tmp_path / "ws"
    result = run_rlm("ingest", str(bundle), "-w", str(ws))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "rlm: note: bundle.zip/deal/locked.docx: skipped, unreadable: an OLE2 compound file" in err
    assert "skipped 1 binary and 1 unreadable (named above)" in err
    names = {r["name"]: r["type"] for r in _docs(ws).values()}
    assert names == {"bundle.zip": "zip", "bundle.zip/deal/contract.pdf": "pdf", "bundle.zip/deal/notes.md": "text",
                     "bundle.zip/outside.txt": "text", "bundle.zip/nested.zip": "zip",
                     "bundle.zip/nested.zip/faq/page.html": "html"}
    page = run_rlm("show", "bundle.zip/deal/contract.pdf", "--page", "7", "-w", str(ws)).stdout.decode()
    assert page.startswith("6. Termination")
    listing = run_rlm("show", "bundle.zip", "-w", str(ws)).stdout.decode()
    assert "- deal/contract.pdf (5,400 bytes)" in listing and "__MACOSX" not in listing and ".." not in listing
    again = run_rlm("ingest", str(bundle), "-w", str(ws))  # unchanged: a stat, nothing read
    assert again.returncode == 0 and "0 new, 1 unchanged" in again.stderr.decode()


def test_a_zip_bomb_is_refused_before_anything_is_inflated(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.txt", b"\0" * (8 << 20))  # 8 MB that deflate to ~8 kB: 1000:1
        z.write(FIXTURES / "notes.md", "notes.md")
    named = run_rlm("ingest", str(bomb), str(FIXTURES / "contract.pdf"), "-w", str(tmp_path / "ws"))
    assert named.returncode == 1
    assert "bomb.zip: refused: part zeros.txt inflates" in named.stderr.decode() and "a zip bomb?" in named.stderr.decode()
    assert list(_docs(tmp_path / "ws")) == ["contract.pdf"]  # nothing of the archive, the other input went in
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.move(str(bomb), folder / "bomb.zip")
    walked = run_rlm("ingest", str(folder), "-w", str(tmp_path / "ws2"), "--strict")
    assert walked.returncode == 1 and "folder/bomb.zip: skipped, unreadable: refused" in walked.stderr.decode()


def test_a_folders_unreadable_files_are_listed_without_failing_unless_strict(tmp_path: Path) -> None:
    """The project's own repository holds an encrypted .docx test fixture: a code tree like it
    ingests with exit 0 and names what it skipped; a file named on the command line still fails."""
    result = run_rlm("ingest", str(ROOT), "-w", str(tmp_path / "repo"))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert f"rlm: note: {ROOT.name}/fixtures/encrypted.docx: skipped, unreadable: an OLE2 compound file" in err
    assert "1 unreadable (named above)" in err.splitlines()[-1]
    assert f"{ROOT.name}/src/rlmcli/cli/app.py" in {r["name"] for r in _docs(tmp_path / "repo").values()}
    strict = run_rlm("ingest", str(ROOT), "-w", str(tmp_path / "repo"), "--strict")
    assert strict.returncode == 1 and "encrypted.docx: skipped, unreadable" in strict.stderr.decode()
    named = run_rlm("ingest", str(FIXTURES / "encrypted.docx"), str(FIXTURES / "notes.md"), "-w", str(tmp_path / "x"))
    assert named.returncode == 1 and "rlm: error: encrypted.docx: an OLE2 compound file" in named.stderr.decode()
