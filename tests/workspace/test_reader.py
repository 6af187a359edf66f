"""The one workspace reader: names resolve the same in the CLI, in citations and in model code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlmcli.answer import check_citations
from rlmcli.cli import app
from rlmcli.sandbox import Sandbox
from rlmcli.workspace.ingest import ingest
from rlmcli.workspace.reader import NoSuchDocument, NoSuchPage, WorkspaceReader
from rlmcli.workspace.store import Workspace

NAMES = {
    "My Notes (v2).txt": "notes about termination\n",
    "contract.pdf.txt": "not the pdf\n",
    "Übersicht [final].md": "# Overview\nfees and payments\n",
    "report.txt": "annual report\n",
    "report.md": "# Report\nin markdown\n",
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    src = tmp_path_factory.mktemp("src")
    for name, text in NAMES.items():
        (src / name).write_text(text, encoding="utf-8")
    workspace, report = ingest([str(src / n) for n in NAMES], tmp_path_factory.mktemp("ws") / "ws")
    assert not report.failed
    return workspace


@pytest.mark.parametrize(("name", "doc"), [
    ("my-notes-v2.txt", "my-notes-v2.txt"),  # the id
    ("My Notes (v2).txt", "my-notes-v2.txt"),  # the file name
    ("my notes (v2).TXT", "my-notes-v2.txt"),  # ignoring case
    ("My Notes (v2)", "my-notes-v2.txt"),  # without the extension
    ("my-notes", "my-notes-v2.txt"),  # a unique prefix
    ("Übersicht [final]", "ubersicht-final.md"),  # brackets and accents
    ("Übersicht [final].md", "ubersicht-final.md"),
    ("contract.pdf.txt", "contract.pdf.txt"),
    ("report.txt", "report.txt"),
])
def test_names_resolve(ws: Workspace, name: str, doc: str) -> None:
    assert WorkspaceReader(ws.root).resolve(name) == doc
    assert ws.resolve_doc(name) == doc


def test_ambiguous_and_unknown_names_say_what_is_close(ws: Workspace) -> None:
    reader = WorkspaceReader(ws.root)
    with pytest.raises(NoSuchDocument, match=r"'report' matches several documents: report.md, report.txt"):
        reader.resolve("report")
    with pytest.raises(NoSuchDocument, match=r"no document 'my notse \(v2\)'; did you mean my-notes-v2.txt\?"):
        reader.resolve("my notse (v2)")
    with pytest.raises(NoSuchDocument, match=r"no document 'zzzz'; documents are: "):
        reader.resolve("zzzz")
    with pytest.raises(NoSuchPage, match="report.txt has pages 1-1; there is no page 2"):
        reader.read_page("report.txt", 2)


def test_the_cli_citations_and_model_code_resolve_the_same_name(ws: Workspace) -> None:
    shown = CliRunner().invoke(app, ["show", "My Notes (v2)", "-w", str(ws.root)])
    assert shown.exit_code == 0 and shown.stdout == "notes about termination\n"
    cites = check_citations('It ends, "notes about termination" [My Notes (v2) p.1].', ws)
    assert [(c.doc, c.status) for c in cites] == [("my-notes-v2.txt", "verified")]
    with Sandbox(ws.root) as sandbox:
        out = sandbox.run("print(read('My Notes (v2)', 1))\nprint(len(grep('fees', doc='Übersicht [final]')))")
    assert out.stdout == "[my-notes-v2.txt p.1]\nnotes about termination\n\n1\n", out.stderr


def test_a_long_lived_reader_sees_documents_added_later(ws: Workspace, tmp_path: Path) -> None:
    reader = WorkspaceReader(ws.root)
    before = set(reader.documents)
    extra = tmp_path / "later.txt"
    extra.write_text("added later\n")
    ingest([str(extra)], ws.root)
    assert set(reader.documents) - before == {"later.txt"}
    assert reader.resolve("later") == "later.txt"


def test_the_reader_is_standard_library_only() -> None:
    code = ("import sys; before = set(sys.modules); import rlmcli.workspace.reader, rlmcli.workspace.query; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(new - set(sys.stdlib_module_names) - {'rlmcli'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
