"""The library's ingest: content addressing, replacement, atomicity, recovery and locking."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from rlmcli.workspace.ingest import ingest
from rlmcli.workspace.store import Workspace
from tests.conftest import FIXTURES, corpus_file


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def test_layout_manifest_meta_pages_and_index(tmp_path: Path) -> None:
    ws, report = ingest([str(FIXTURES / "contract.pdf"), str(FIXTURES / "contract.docx")], tmp_path / "ws")
    assert report.added == ["contract.pdf", "contract.docx"] and not report.failed
    manifest = json.loads((tmp_path / "ws" / "manifest.json").read_text())
    assert manifest["format"] == 1
    assert manifest["totals"]["documents"] == 2
    assert manifest["totals"]["pages"] == 8 + 1
    meta = json.loads((tmp_path / "ws/docs/contract.pdf/meta.json").read_text())
    assert meta["type"] == "pdf" and meta["extractor"] == "pypdfium2" and meta["pages"] == 8
    assert meta["sha256"] and meta["tokens"] == sum(meta["page_tokens"]) > 100
    assert meta["source"] == str((FIXTURES / "contract.pdf").resolve())
    assert (tmp_path / "ws/docs/contract.pdf/pages/0007.txt").read_text().startswith("6. Termination")
    assert "6. Termination  (p. 7)" in (tmp_path / "ws/docs/contract.pdf/outline.txt").read_text()
    with sqlite3.connect(tmp_path / "ws/index.sqlite") as conn:
        rows = conn.execute(
            "SELECT doc, page, line, heading FROM chunks WHERE chunks MATCH 'insolvent' ORDER BY doc").fetchall()
    assert ("contract.pdf", 7, 1, "6. Termination") in rows
    assert any(r[0] == "contract.docx" for r in rows)


def test_reingest_unchanged_uses_size_and_mtime_without_reading(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("alpha beta gamma\n")
    ingest([str(src)], tmp_path / "ws")
    st = os.stat(src)
    src.write_text("ALPHA BETA GAMMA\n")  # same size; put the old mtime back
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    ws, report = ingest([str(src)], tmp_path / "ws")
    assert report.unchanged == ["notes.txt"]
    assert ws.read_page("notes.txt", 1) == "alpha beta gamma\n"  # the fast path did not read it


def test_touched_file_is_hashed_and_kept(tmp_path: Path) -> None:
    src = _copy(FIXTURES / "notes.md", tmp_path / "notes.md")
    ingest([str(src)], tmp_path / "ws")
    os.utime(src, (1, 1))
    ws, report = ingest([str(src)], tmp_path / "ws")
    assert report.unchanged == ["notes.md"] and not report.added and not report.replaced
    assert ws.documents()["notes.md"].mtime_ns == 1_000_000_000


def test_changed_file_replaces_its_old_version(tmp_path: Path) -> None:
    src = tmp_path / "policy.txt"
    src.write_text("Old policy: thirty days.\n")
    ingest([str(src)], tmp_path / "ws")
    src.write_text("New policy: ninety days notice is required.\n")
    ws, report = ingest([str(src)], tmp_path / "ws")
    assert report.replaced == ["policy.txt"]
    assert list(ws.documents()) == ["policy.txt"]
    assert "ninety" in ws.read_page("policy.txt", 1)
    with sqlite3.connect(ws.index_path) as conn:
        assert conn.execute("SELECT count(*) FROM chunks WHERE chunks MATCH 'thirty'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM chunks WHERE chunks MATCH 'ninety'").fetchone()[0] == 1


def test_same_content_under_two_names_is_stored_once(tmp_path: Path) -> None:
    a = _copy(FIXTURES / "contract.pdf", tmp_path / "a.pdf")
    b = _copy(FIXTURES / "contract.pdf", tmp_path / "b.pdf")
    ws, report = ingest([str(a), str(b)], tmp_path / "ws")
    assert report.added == ["a.pdf"] and report.duplicates == [("b.pdf", "a.pdf")]
    assert ws.documents()["a.pdf"].aliases == [str(b.resolve())]
    assert sorted(p.name for p in ws.docs_dir.iterdir()) == ["a.pdf"]


def test_doc_ids_are_readable_and_unique(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    one = tmp_path / "x" / "My Report (Final).TXT"
    two = tmp_path / "y" / "My Report (Final).TXT"
    one.write_text("first\n")
    two.write_text("second\n")
    ws, report = ingest([str(one), str(two)], tmp_path / "ws")
    assert report.added == ["my-report-final.txt", "my-report-final-2.txt"]


def test_doc_ids_of_non_ascii_names_stay_readable(tmp_path: Path) -> None:
    names = ["Übersicht Verträge.md", "Договор Й.txt", "合同 2024.txt", "𠀀" * 60 + ".txt"]
    for i, name in enumerate(names):
        (tmp_path / name).write_text(f"text number {i}\n")
    ws, report = ingest([str(tmp_path / n) for n in names], tmp_path / "ws")
    assert not report.failed
    assert report.added[:3] == ["ubersicht-vertrage.md", "договор-й.txt", "合同-2024.txt"]
    assert len(report.added[3].encode()) <= 200  # 4-byte characters: the id still fits a file name
    assert ws.read_page("договор-й.txt", 1) == "text number 1\n"
    assert ws.resolve_doc("合同 2024.txt") == "合同-2024.txt"


def test_automatic_workspace_is_keyed_by_content(tmp_path: Path, rlm_home: Path) -> None:
    a = _copy(FIXTURES / "notes.md", tmp_path / "a.md")
    ws1, _ = ingest([str(a)])
    ws2, report = ingest([str(a)])
    assert ws1.root == ws2.root and ws1.root.parent == rlm_home / "auto"
    assert report.unchanged == ["a.md"]
    a.write_text("# different content\n")
    ws3, _ = ingest([str(a)])
    assert ws3.root != ws1.root


def test_stdin_becomes_a_document_named_stdin(tmp_path: Path) -> None:
    import io

    ws, report = ingest(["-"], tmp_path / "ws", stdin=io.BytesIO(b"piped text about termination\n"))
    assert report.added == ["stdin"]
    assert ws.documents()["stdin"].source == "-"
    assert ws.read_page("stdin", 1) == "piped text about termination\n"


def test_crash_leftovers_are_cleaned_when_a_writer_opens(tmp_path: Path) -> None:
    """A writer killed mid-build leaves a half-built document in .tmp/ and maybe a .trash/ of
    replaced ones: neither was ever committed, and the next writer removes both."""
    ws, _ = ingest([str(FIXTURES / "notes.md")], tmp_path / "ws")
    manifest = ws.manifest_path.read_bytes()
    (ws.root / ".tmp" / "half-built" / "pages").mkdir(parents=True)
    (ws.root / ".tmp" / "half-built" / "pages" / "0001.txt").write_text("never committed\n")
    (ws.root / ".trash" / "old").mkdir(parents=True)
    with ws.writer():
        pass
    assert not (ws.root / ".tmp").exists() and not (ws.root / ".trash").exists()
    assert sorted(ws.documents()) == ["notes.md"] and ws.manifest_path.read_bytes() == manifest


_CONCURRENT = """
import sys
from rlmcli.workspace.ingest import ingest
ws, report = ingest(sys.argv[2:], sys.argv[1])
print(len(report.added), len(report.failed))
"""


def test_two_processes_never_interleave_writes(tmp_path: Path) -> None:
    files_a, files_b = [], []
    for i in range(40):
        for files, tag in ((files_a, "a"), (files_b, "b")):
            f = tmp_path / f"{tag}{i}.txt"
            f.write_text(f"document {tag} number {i}\n" * 50)
            files.append(str(f))
    ws_dir = str(tmp_path / "ws")
    Workspace.create(Path(ws_dir))
    procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT, ws_dir, *files], stdout=subprocess.PIPE, text=True)
             for files in (files_a, files_b)]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert outputs == [["40", "0"], ["40", "0"]]
    ws = Workspace.open(Path(ws_dir))
    assert len(ws.documents()) == 80
    assert sorted(p.name for p in ws.docs_dir.iterdir()) == sorted(ws.documents())
    with sqlite3.connect(ws.index_path) as conn:
        assert conn.execute("SELECT count(DISTINCT doc) FROM chunks").fetchone()[0] == 80


def test_ten_copies_of_a_real_pdf_stay_distinct_when_their_bytes_differ(tmp_path: Path) -> None:
    src = corpus_file("R-FAQ.pdf").read_bytes()
    paths = []
    for i in range(3):
        p = tmp_path / f"faq{i}.pdf"
        p.write_bytes(src + f"\n% copy {i}\n".encode())
        paths.append(str(p))
    ws, report = ingest(paths, tmp_path / "ws")
    assert report.added == ["faq0.pdf", "faq1.pdf", "faq2.pdf"]
    assert ws.documents()["faq1.pdf"].pages == ws.documents()["faq0.pdf"].pages > 30


def test_a_document_that_fails_while_committing_leaves_no_trace(tmp_path: Path) -> None:
    """Pages are written and indexed before token counts arrive; a failure then must undo both,
    and a failed replacement must keep the old version."""
    from rlmcli.workspace.build import DocumentBuild

    ws, _ = ingest([str(FIXTURES / "notes.md")], tmp_path / "ws")
    before = (ws.docs_dir / "notes.md" / "pages" / "0001.txt").read_text()

    def counts_fail() -> list[int]:
        raise OSError("token helper lost")

    def build(name: str) -> DocumentBuild:
        return DocumentBuild(name=name, source=f"/x/{name}", sha256="e" * 64, size=10, mtime_ns=1, type="text",
                             extractor="text", pages=["zyzzyva quokka\n"], tokens=counts_fail)

    with ws.writer() as w:
        for name, replace in (("new.txt", None), ("notes.md", "notes.md")):
            try:
                w.add(build(name), replace=replace)
            except OSError:
                pass
            else:
                raise AssertionError("the failure was swallowed")
        w.add(DocumentBuild(name="ok.txt", source="/x/ok.txt", sha256="d" * 64, size=3, mtime_ns=1, type="text",
                            extractor="text", pages=["fine\n"], tokens=lambda: [1]))
    ws = Workspace.open(tmp_path / "ws")
    assert sorted(ws.documents()) == ["notes.md", "ok.txt"]
    assert sorted(p.name for p in ws.docs_dir.iterdir()) == ["notes.md", "ok.txt"]
    assert (ws.docs_dir / "notes.md" / "pages" / "0001.txt").read_text() == before
    assert list((ws.root / ".tmp").glob("*")) == []
    with sqlite3.connect(ws.index_path) as conn:
        assert conn.execute("SELECT count(*) FROM chunks WHERE chunks MATCH 'zyzzyva'").fetchone()[0] == 0
        assert conn.execute("SELECT doc FROM chunks WHERE chunks MATCH 'fine'").fetchall() == [("ok.txt",)]
        assert conn.execute("SELECT count(*) FROM chunks WHERE doc = 'notes.md'").fetchone()[0] > 0


def _stage_commit(tmp_path: Path, committed: bool) -> tuple[Workspace, str]:
    """A writer that died between writing its journal and finishing the commit: the journal says
    what the new generation is; the index did (or did not) commit it."""
    from rlmcli.workspace.journal import JOURNAL

    ws, _ = ingest([str(FIXTURES / "notes.md")], tmp_path / "ws")
    new = tmp_path / "new.txt"
    new.write_text("a new document about termination\n")
    ingest([str(new)], tmp_path / "scratch-ws")
    staged = ws.root / ".tmp" / "staged"
    shutil.copytree(tmp_path / "scratch-ws" / "docs" / "new.txt", staged)
    manifest = json.loads(ws.manifest_path.read_text())
    rec = json.loads((tmp_path / "scratch-ws" / "manifest.json").read_text())["documents"]["new.txt"]
    manifest["documents"]["new.txt"] = rec
    manifest["generation"] = manifest.get("generation", 0) + 1
    (ws.root / JOURNAL).write_text(json.dumps({"generation": manifest["generation"], "manifest": manifest,
                                               "ops": [["put", "new.txt", str(staged)]]}))
    with sqlite3.connect(ws.index_path) as conn:
        if committed:
            conn.execute("INSERT INTO docs(doc, sha256) VALUES ('new.txt', ?)", (rec["sha256"],))
            conn.execute("INSERT INTO chunks(heading, body, doc, page, line) VALUES ('', 'termination', 'new.txt', 1, 1)")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(manifest["generation"]),))
    return ws, rec["sha256"]


def test_an_interrupted_commit_is_rolled_forward_once_the_index_committed(tmp_path: Path) -> None:
    ws, sha = _stage_commit(tmp_path, committed=True)
    opened = Workspace.open(ws.root)  # any command opening the workspace settles it
    assert sorted(opened.documents()) == ["new.txt", "notes.md"] and opened.documents()["new.txt"].sha256 == sha
    assert opened.read_page("new.txt", 1) == "a new document about termination\n"
    assert not (ws.root / ".journal.json").exists()


def test_an_interrupted_commit_is_discarded_when_the_index_did_not(tmp_path: Path) -> None:
    ws, _ = _stage_commit(tmp_path, committed=False)
    opened = Workspace.open(ws.root)
    assert sorted(opened.documents()) == ["notes.md"] and not (ws.root / "docs" / "new.txt").exists()
    with sqlite3.connect(ws.index_path) as conn:
        assert {r[0] for r in conn.execute("SELECT doc FROM docs")} == {"notes.md"}
    assert not (ws.root / ".journal.json").exists()
