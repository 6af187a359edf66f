"""Every format a user has: real files built here with the libraries that write them, then the
bad inputs each format can be (truncated, encrypted, the wrong extension, empty)."""

from __future__ import annotations

import email.message
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from rlmcli.workspace.ingest import ingest
from tests.conftest import FIXTURES, run_rlm

ODF_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0",
}


def make_pptx(path: Path) -> Path:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Quarterly results"
    body = first.placeholders[1].text_frame
    body.text = "Revenue grew 12% to EUR 48.5 million"
    body.add_paragraph().text = "Churn fell to 3.1%"
    first.notes_slide.notes_text_frame.text = "Mention the Contoso renewal."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Regional split"
    table = second.shapes.add_table(3, 3, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate([["Region", "Revenue", "Growth"], ["EMEA", "21.0", "9%"], ["APAC", "14.2", "18%"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    deck.save(str(path))
    return path


def make_xlsx(path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Invoices"
    sheet.append(["Invoice", "Customer", "Amount", "Due"])
    for i in range(1, 301):
        sheet.append([f"INV-{i:04d}", f"Customer {i % 7}", i * 10.5, f"2024-{1 + i % 12:02d}-15"])
    sheet["F1"] = "Total"
    sheet["F2"] = "=SUM(C2:C301)"
    book.create_sheet("Notes").append(["Payment terms are thirty days net."])
    book.save(path)
    # openpyxl writes formulas without cached values; give F2 one, as Excel would after saving
    with zipfile.ZipFile(path) as zin:
        parts = {n: zin.read(n) for n in zin.namelist()}
    sheet_xml = parts["xl/worksheets/sheet1.xml"].decode()
    assert "<f>SUM(C2:C301)</f><v></v>" in sheet_xml
    parts["xl/worksheets/sheet1.xml"] = sheet_xml.replace("<f>SUM(C2:C301)</f><v></v>", "<f>SUM(C2:C301)</f><v>473970</v>").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in parts.items():
            zout.writestr(name, data)
    return path


def make_epub(path: Path, encrypted: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container xmlns="urn:oasis:names:tc:opendocument:xmlns:container" version="1.0"><rootfiles><rootfile full-path="OEBPS/book.opf" media-type="application/oebps-package+xml"/></rootfiles></container>')
        z.writestr("OEBPS/book.opf", '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>The Harbour Book</dc:title><dc:creator>A. Writer</dc:creator></metadata><manifest><item id="c2" href="ch2.xhtml" media-type="application/xhtml+xml"/><item id="c1" href="ch1.xhtml" media-type="application/xhtml+xml"/></manifest><spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>')
        z.writestr("OEBPS/ch1.xhtml", "<html><body><h1>Arrival</h1><p>The ship came into the harbour at dawn.</p></body></html>")
        z.writestr("OEBPS/ch2.xhtml", "<html><body><h1>Departure</h1><p>They left with the evening tide.</p></body></html>")
        if encrypted:
            z.writestr("META-INF/encryption.xml", '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/></enc:EncryptedData></encryption>')
    return path


def make_odf(path: Path, kind: str, encrypted: bool = False) -> Path:
    ns = " ".join(f'xmlns:{k}="{v}"' for k, v in ODF_NS.items())
    if kind == "odt":
        body = ('<office:text><text:h text:outline-level="1">Service Agreement</text:h>'
                '<text:p>The term is <text:span>three</text:span> years.</text:p>'
                '<table:table><table:table-row><table:table-cell><text:p>Party</text:p></table:table-cell>'
                '<table:table-cell><text:p>Role</text:p></table:table-cell></table:table-row>'
                '<table:table-row><table:table-cell><text:p>Contoso</text:p></table:table-cell>'
                '<table:table-cell><text:p>Supplier</text:p></table:table-cell></table:table-row></table:table>'
                '<text:list><text:list-item><text:p>Renewal every year</text:p></text:list-item></text:list></office:text>')
        mime = "application/vnd.oasis.opendocument.text"
    elif kind == "ods":
        body = ('<office:spreadsheet><table:table table:name="Budget"><table:table-row>'
                '<table:table-cell><text:p>Item</text:p></table:table-cell><table:table-cell><text:p>Cost</text:p></table:table-cell>'
                '<table:table-cell table:number-columns-repeated="16384"/></table:table-row>'
                '<table:table-row><table:table-cell><text:p>Servers</text:p></table:table-cell>'
                '<table:table-cell><text:p>1200</text:p></table:table-cell></table:table-row>'
                '<table:table-row table:number-rows-repeated="1048000"><table:table-cell/></table:table-row>'
                '</table:table></office:spreadsheet>')
        mime = "application/vnd.oasis.opendocument.spreadsheet"
    else:
        body = ('<office:presentation><draw:page draw:name="Welcome"><draw:frame><draw:text-box>'
                '<text:p>Welcome to the kickoff</text:p></draw:text-box></draw:frame>'
                '<presentation:notes><draw:frame><draw:text-box><text:p>Thank the sponsors</text:p>'
                '</draw:text-box></draw:frame></presentation:notes></draw:page></office:presentation>')
        mime = "application/vnd.oasis.opendocument.presentation"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", mime)
        z.writestr("content.xml", f'<?xml version="1.0"?><office:document-content {ns}><office:body>{body}</office:body></office:document-content>')
        manifest = '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        if encrypted:
            manifest += '<manifest:file-entry manifest:full-path="content.xml"><manifest:encryption-data/></manifest:file-entry>'
        z.writestr("META-INF/manifest.xml", manifest + "</manifest:manifest>")
    return path


def make_eml(path: Path, attach: Path | None = None) -> Path:
    message = email.message.EmailMessage()
    message["From"] = "Ana Lopez <ana@contoso.example>"
    message["To"] = "legal@northwind.example"
    message["Date"] = "Tue, 01 Oct 2024 09:30:00 +0000"
    message["Subject"] = "Signed amendment"
    message.set_content("Hi,\n\nthe signed amendment raises the fee to EUR 52,000 from January.\n")
    message.add_alternative("<html><body><p>HTML version that should not win</p></body></html>", subtype="html")
    if attach is not None:
        message.add_attachment(attach.read_bytes(), maintype="application", subtype="pdf", filename=attach.name)
    path.write_bytes(bytes(message))
    return path


def _docs(ws_root: Path) -> dict[str, dict[str, object]]:
    return json.loads((ws_root / "manifest.json").read_text())["documents"]


def _pages(ws_root: Path, doc: str) -> list[str]:
    return [p.read_text() for p in sorted((ws_root / "docs" / doc / "pages").iterdir())]


def test_pptx_slides_are_pages_with_tables_and_notes(tmp_path: Path) -> None:
    ws, report = ingest([str(make_pptx(tmp_path / "deck.pptx"))], tmp_path / "ws")
    assert not report.failed
    first, second = _pages(ws.root, "deck.pptx")
    assert first.startswith("# Slide 1: Quarterly results\nRevenue grew 12% to EUR 48.5 million\nChurn fell to 3.1%")
    assert "[notes] Mention the Contoso renewal." in first
    assert "Region | Revenue | Growth\nEMEA | 21.0 | 9%\nAPAC | 14.2 | 18%" in second
    assert ws.documents()["deck.pptx"].type == "pptx"


def test_xlsx_sheets_rows_repeated_headers_and_cached_formulas(tmp_path: Path) -> None:
    ws, report = ingest([str(make_xlsx(tmp_path / "book.xlsx"))], tmp_path / "ws")
    assert not report.failed
    pages = _pages(ws.root, "book.xlsx")
    assert pages[0].startswith("## Sheet: Invoices\nInvoice | Customer | Amount | Due |  | Total\nINV-0001 | Customer 1 | 10.5 | 2024-02-15 |  | 473970")
    assert len(pages) > 3 and all(p.splitlines()[1].startswith("[columns] Invoice | Customer") for p in pages[1:-1])
    assert pages[-1].startswith("## Sheet: Notes\nPayment terms are thirty days net.")
    hits = [line for p in pages for line in p.splitlines() if "INV-0123" in line]
    assert hits == ["INV-0123 | Customer 4 | 1291.5 | 2024-04-15"]  # grep finds the whole row


def test_csv_rows_with_header_on_every_page(tmp_path: Path) -> None:
    path = tmp_path / "ledger.csv"
    path.write_text("date,account,amount\n" + "".join(f"2024-01-{1 + i % 28:02d},acct-{i},{i}.50\n" for i in range(400)))
    ws, _ = ingest([str(path)], tmp_path / "ws")
    pages = _pages(ws.root, "ledger.csv")
    assert pages[0].startswith("## ledger.csv\ndate | account | amount\n2024-01-01 | acct-0 | 0.50")
    assert pages[1].startswith("## ledger.csv (continued, part 2)\n[columns] date | account | amount\n")


def test_epub_chapters_in_spine_order(tmp_path: Path) -> None:
    ws, _ = ingest([str(make_epub(tmp_path / "book.epub"))], tmp_path / "ws")
    pages = _pages(ws.root, "book.epub")
    assert pages[0].startswith("# Arrival") and pages[1].startswith("# Departure")
    meta = ws.meta("book.epub")
    assert meta["outline"] == [[1, 1, "Arrival"], [1, 2, "Departure"]] and meta["metadata"]["title"] == "The Harbour Book"


@pytest.mark.parametrize(("kind", "expected"), [
    ("odt", ["# Service Agreement", "The term is three years.", "Party | Role", "Contoso | Supplier", "- Renewal every year"]),
    ("ods", ["## Sheet: Budget", "Item | Cost", "Servers | 1200"]),
    ("odp", ["# Slide 1: Welcome", "Welcome to the kickoff", "[notes] Thank the sponsors"]),
])
def test_opendocument(tmp_path: Path, kind: str, expected: list[str]) -> None:
    ws, report = ingest([str(make_odf(tmp_path / f"file.{kind}", kind))], tmp_path / "ws")
    assert not report.failed, report.failed
    text = "".join(_pages(ws.root, f"file.{kind}"))
    assert text.splitlines() == expected  # a million repeated empty rows are formatting, not content


def test_eml_prefers_text_and_ingests_a_pdf_attachment(tmp_path: Path) -> None:
    mail = make_eml(tmp_path / "amendment.eml", attach=FIXTURES / "contract.pdf")
    result = run_rlm("ingest", str(mail), "-w", str(tmp_path / "ws"))
    assert result.returncode == 0, result.stderr
    docs = _docs(tmp_path / "ws")
    assert sorted(docs) == ["amendment.eml", "amendment.eml-contract.pdf"]
    page = _pages(tmp_path / "ws", "amendment.eml")[0]
    assert page.startswith("From: Ana Lopez <ana@contoso.example>\nTo: legal@northwind.example\n"
                           "Date: Tue, 01 Oct 2024 09:30:00 +0000\nSubject: Signed amendment\nAttachments: contract.pdf\n")
    assert "EUR 52,000" in page and "HTML version" not in page
    assert docs["amendment.eml-contract.pdf"]["type"] == "pdf" and docs["amendment.eml-contract.pdf"]["pages"] == 8
    assert docs["amendment.eml-contract.pdf"]["source"].endswith("amendment.eml#contract.pdf")
    again = run_rlm("ingest", str(mail), "-w", str(tmp_path / "ws"))
    assert "0 new" in again.stderr.decode() and "unchanged" in again.stderr.decode()


def test_mbox_a_message_per_page(tmp_path: Path) -> None:
    import mailbox

    box = mailbox.mbox(str(tmp_path / "inbox.mbox"))
    for i in range(3):
        m = email.message.EmailMessage()
        m["From"], m["To"], m["Subject"] = f"sender{i}@example.com", "me@example.com", f"Update {i}"
        m.set_content(f"Status report number {i}.")
        box.add(m)
    box.flush()
    box.close()
    ws, report = ingest([str(tmp_path / "inbox.mbox")], tmp_path / "ws")
    assert not report.failed
    pages = _pages(ws.root, "inbox.mbox")
    assert len(pages) == 3 and pages[2].startswith("# Message 3\nFrom: sender2@example.com")
    assert ws.meta("inbox.mbox")["outline"] == [[1, 1, "Update 0"], [1, 2, "Update 1"], [1, 3, "Update 2"]]


def test_a_code_tree_ingests_cleanly_and_cites_path_and_line(tmp_path: Path) -> None:
    from rlmcli.answer import check_citations

    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "core.py").write_text("".join(f"def f{i}():\n    return {i}\n\n" for i in range(400)))
    (repo / "node_modules" / "left-pad").mkdir(parents=True)
    (repo / "node_modules" / "left-pad" / "index.js").write_text("module.exports = 1\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.txt").write_text("generated\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    result = run_rlm("ingest", str(repo), "-w", str(tmp_path / "ws"))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "1 new" in err and "1 empty" in err and "1 binary" in err and "rlm: error" not in err
    docs = _docs(tmp_path / "ws")
    assert list(docs) == ["repo-pkg-core.py"] and docs["repo-pkg-core.py"]["name"] == "repo/pkg/core.py"
    from rlmcli.workspace.store import Workspace

    ws = Workspace.open(tmp_path / "ws")
    cites = check_citations('f350 returns "return 350" [pkg/core.py:1052].', ws)
    assert [(c.doc, c.status, c.file_line) for c in cites] == [("repo-pkg-core.py", "verified", 1052)]
    assert ws.read_page("repo-pkg-core.py", cites[0].page).splitlines()[cites[0].line - 1] == "    return 350"


# ---- bad inputs: truncated, encrypted, the wrong extension, empty -------------------------------

BUILDERS = {"pptx": make_pptx, "xlsx": make_xlsx, "epub": make_epub, "odt": lambda p: make_odf(p, "odt"),
            "ods": lambda p: make_odf(p, "ods"), "odp": lambda p: make_odf(p, "odp")}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_bad_inputs_of_each_format(tmp_path: Path, kind: str) -> None:
    good = BUILDERS[kind](tmp_path / f"good.{kind}")
    truncated = tmp_path / f"truncated.{kind}"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / f"empty.{kind}"
    empty.write_bytes(b"")
    misnamed = tmp_path / "actually-a-deck.pdf"  # the right format behind the wrong extension
    shutil.copy(good, misnamed)
    encrypted = tmp_path / f"locked.{kind}"
    if kind in ("pptx", "xlsx"):
        shutil.copy(FIXTURES / "encrypted.docx", encrypted)  # Office encrypts into an OLE2 container
    elif kind == "epub":
        make_epub(encrypted, encrypted=True)
    else:
        make_odf(encrypted, kind, encrypted=True)
    result = run_rlm("ingest", *(str(p) for p in (good, truncated, empty, misnamed, encrypted)), "-w",
                     str(tmp_path / "ws"))
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert f"truncated.{kind}: not a valid" in err
    assert f"empty.{kind}: empty file (0 bytes)" in err
    assert f"locked.{kind}:" in err and ("password" in err or "DRM" in err)
    docs = _docs(tmp_path / "ws")
    assert sorted(docs) == [f"good.{kind}"]  # the misnamed copy is the same content: stored once
    assert "actually-a-deck.pdf: same content as" in err
    assert "Traceback" not in err


def test_a_format_behind_the_wrong_extension_is_read_as_what_it_is(tmp_path: Path) -> None:
    deck = make_pptx(tmp_path / "deck.pptx")
    renamed = tmp_path / "slides.pdf"
    deck.rename(renamed)
    pdf_as_text = tmp_path / "contract.txt"
    shutil.copy(FIXTURES / "contract.pdf", pdf_as_text)
    ws, report = ingest([str(renamed), str(pdf_as_text)], tmp_path / "ws")
    assert not report.failed
    assert ws.documents()["slides.pdf"].type == "pptx" and ws.documents()["contract.txt"].type == "pdf"


def test_msg_without_the_extra_or_broken_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "note.msg"
    bad.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    result = run_rlm("ingest", str(bad), "-w", str(tmp_path / "ws"))
    assert result.returncode == 1
    assert b"note.msg: not a valid Outlook .msg file" in result.stderr or b"rlmcli[msg]" in result.stderr


def test_xml_with_entity_bombs_is_refused(tmp_path: Path) -> None:
    bomb = make_odf(tmp_path / "laughs.odt", "odt")
    lol = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
           '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><office:document-content>&lol3;</office:document-content>')
    with zipfile.ZipFile(bomb, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", lol)
    result = run_rlm("ingest", str(bomb), "-w", str(tmp_path / "ws"))
    assert result.returncode == 1 and b"laughs.odt: not a valid ODT file" in result.stderr
    assert b"Entities" in result.stderr or b"entit" in result.stderr.lower()


# ---- scanned PDFs and OCR ---------------------------------------------------------------------

def scan(source: Path, out: Path, pages: list[int], dpi: int = 150) -> Path:
    """A 'scanned' PDF: the given pages of a real PDF rendered to images, no text layer at all."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(source))
    images = [pdf[i - 1].render(scale=dpi / 72, grayscale=True).to_pil() for i in pages]
    images[0].save(out, save_all=True, append_images=images[1:], resolution=dpi)
    return out


def _words(text: str) -> dict[str, int]:
    import collections
    import re

    return collections.Counter(re.findall(r"[a-z0-9]+", text.lower()))


def test_a_scanned_pdf_is_read_by_ocr_and_marked(tmp_path: Path) -> None:
    scanned = scan(FIXTURES / "contract.pdf", tmp_path / "signed-scan.pdf", [4, 7])
    result = run_rlm("ingest", str(scanned), "-w", str(tmp_path / "ws"))
    assert result.returncode == 0, result.stderr
    assert b"OCR: text recognised on pages 1-2" in result.stderr
    docs = _docs(tmp_path / "ws")
    assert docs["signed-scan.pdf"]["ocr_pages"] == [1, 2]
    from rlmcli.workspace.store import Workspace

    ws = Workspace.open(tmp_path / "ws")
    truth = [ws_text for ws_text in (Workspace.open(_text_layer(tmp_path)).read_page("contract.pdf", n) for n in (4, 7))]
    for page, expected in zip((1, 2), truth, strict=True):
        got, want = _words(ws.read_page("signed-scan.pdf", page)), _words(expected)
        recall = sum((got & want).values()) / sum(want.values())
        assert recall >= 0.95, (page, recall)
    from rlmcli.answer import check_citations, sources_text

    cites = check_citations('The fee is "EUR 48,500" [signed-scan.pdf p.1].', ws)
    assert cites[0].status == "verified" and cites[0].ocr
    assert "signed-scan.pdf p.1, OCR" in sources_text(cites, ws)
    off = run_rlm("ingest", str(scanned), "-w", str(tmp_path / "ws-off"), "--ocr", "never")
    assert b"no text on any page (scanned or image-only PDF?); OCR is off (--ocr never)" in off.stderr


def _text_layer(tmp_path: Path) -> Path:
    root = tmp_path / "text-layer"
    if not root.exists():
        ingest([str(FIXTURES / "contract.pdf")], root)
    return root


def test_ocr_on_real_corpus_pages(tmp_path: Path) -> None:
    from tests.conftest import corpus_file

    source = corpus_file("R-intro.pdf")
    scanned = scan(source, tmp_path / "r-intro-scan.pdf", [12, 13, 14])
    ws, report = ingest([str(scanned), str(source)], tmp_path / "ws")
    assert not report.failed
    got = _words("".join(ws.read_page("r-intro-scan.pdf", n) for n in (1, 2, 3)))
    want = _words("".join(ws.read_page("r-intro.pdf", n) for n in (12, 13, 14)))
    assert sum((got & want).values()) / sum(want.values()) >= 0.97


def test_ocr_always_reads_every_page_and_the_model_is_told(tmp_path: Path) -> None:
    from rlmcli.sandbox import Sandbox

    ws, _ = ingest([str(FIXTURES / "contract.pdf")], tmp_path / "ws", ocr="always")
    assert ws.documents()["contract.pdf"].ocr_pages  # the text layer was poorer on none: OCR is kept where richer
    ocr_page = ws.documents()["contract.pdf"].ocr_pages[0]
    with Sandbox(ws.root) as sb:
        out = sb.run(f"print(read('contract.pdf', {ocr_page}).splitlines()[0])")
    assert out.stdout == f"[contract.pdf p.{ocr_page}, OCR]\n", out.stderr


def test_bad_mail_and_csv_inputs(tmp_path: Path) -> None:
    empty_eml = tmp_path / "empty.eml"
    empty_eml.write_bytes(b"")
    not_mail = tmp_path / "notes.eml"
    not_mail.write_text("just some words\nwithout any headers\n")
    binary_eml = tmp_path / "blob.eml"
    binary_eml.write_bytes(bytes(range(256)) * 20)
    no_messages = tmp_path / "empty-box.mbox"
    no_messages.write_text("this file was meant to hold mail\n")
    blank_csv = tmp_path / "blank.csv"
    blank_csv.write_text("\n\n   \n")
    truncated = tmp_path / "cut.eml"
    full = make_eml(tmp_path / "full.eml", attach=FIXTURES / "contract.pdf").read_bytes()
    truncated.write_bytes(full[: len(full) // 2])  # the attachment's base64 stops half-way
    result = run_rlm("ingest", *(str(p) for p in (empty_eml, not_mail, binary_eml, no_messages, blank_csv, truncated)),
                     "-w", str(tmp_path / "ws"))
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err
    assert "empty.eml: empty file (0 bytes)" in err
    assert "notes.eml: not an email: no From, To, Date or Subject header" in err
    assert "blob.eml: binary file" in err
    assert "empty-box.mbox: no messages in this mbox" in err
    assert "blank.csv: no rows" in err
    docs = _docs(tmp_path / "ws")
    assert "cut.eml" in docs  # the message itself is readable; the cut attachment fails alone
