"""What a document is: its bytes and the options that shaped its text. A re-ingest with another
--ocr extracts again; stdin keeps its own name even when its bytes repeat a file's."""

from __future__ import annotations

import json
from pathlib import Path

from rlmcli.answer import check_citations
from rlmcli.workspace.store import Workspace
from tests.conftest import FIXTURES, run_rlm
from tests.workspace.test_formats import scan


def _docs(ws: Path) -> dict[str, dict]:
    return json.loads((ws / "manifest.json").read_text())["documents"]


def test_another_ocr_option_extracts_again(tmp_path: Path) -> None:
    scanned = scan(FIXTURES / "contract.pdf", tmp_path / "scan.pdf", [4])
    ws = tmp_path / "ws"
    never = run_rlm("ingest", str(scanned), "-w", str(ws), "--ocr", "never")
    assert never.returncode == 0 and _docs(ws)["scan.pdf"]["tokens"] == 0
    always = run_rlm("ingest", str(scanned), "-w", str(ws), "--ocr", "always")
    assert always.returncode == 0 and "1 updated" in always.stderr.decode(), always.stderr
    doc = _docs(ws)["scan.pdf"]
    assert doc["tokens"] > 0 and doc["ocr_pages"] == [1] and doc["extraction"] == "ocr=always"
    assert "EUR 48,500" in Workspace.open(ws).read_page("scan.pdf", 1)
    again = run_rlm("ingest", str(scanned), "-w", str(ws), "--ocr", "always")
    assert "1 unchanged" in again.stderr.decode() and "updated" not in again.stderr.decode()


def test_text_files_do_not_depend_on_ocr(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run_rlm("ingest", str(FIXTURES / "notes.md"), "-w", str(ws), "--ocr", "never").returncode == 0
    again = run_rlm("ingest", str(FIXTURES / "notes.md"), "-w", str(ws), "--ocr", "always")
    assert "1 unchanged" in again.stderr.decode()


def test_stdin_keeps_its_name_when_its_bytes_repeat_a_file(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    notes = FIXTURES / "notes.md"
    assert run_rlm("ingest", str(notes), "-w", str(ws)).returncode == 0
    piped = run_rlm("ingest", "-", "-w", str(ws), input=notes.read_bytes())
    assert piped.returncode == 0, piped.stderr
    docs = _docs(ws)
    assert docs["stdin"]["source"] == "-" and docs["notes.md"]["aliases"] == []
    first_line = notes.read_text().splitlines()[0].lstrip("# ")
    cites = check_citations(f'It begins "{first_line}" [stdin p.1].', Workspace.open(ws))
    assert [(c.doc, c.status) for c in cites] == [("stdin", "verified")]
    copy = tmp_path / "copy.md"  # a file that repeats a file is still recorded as its duplicate
    copy.write_bytes(notes.read_bytes())
    assert "1 duplicate" in run_rlm("ingest", str(copy), "-w", str(ws)).stderr.decode()
    assert _docs(ws)["notes.md"]["aliases"] == [str(copy.resolve())]
