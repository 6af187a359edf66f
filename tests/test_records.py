"""The typed records keep the JSON they replace: the manifest's entries, `rlm.answer/1`'s status
and limit, citation states. Old files still read, new files read the same as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlmcli.errors import WorkspaceError
from rlmcli.records import CitationState, DocumentRecord, Limit, RunStatus, SubcallOutcome
from rlmcli.workspace.ingest import auto_key, ingest
from rlmcli.workspace.reader import WorkspaceReader
from rlmcli.workspace.sources import Source
from tests.conftest import FIXTURES

# A manifest entry as rlm 0.1 writes it (the keys and their order), for a text file.
ENTRY = {"name": "notes.md", "source": "/home/a/notes.md", "aliases": [], "sha256": "ab" * 32, "size": 120,
         "mtime_ns": 1_000_000_000, "type": "text", "extractor": "text", "pages": 1, "chars": 118, "tokens": 30,
         "warnings": [], "card": {"title": "Notes", "version": "2"}}


def test_a_manifest_entry_reads_and_writes_back_unchanged() -> None:
    record = DocumentRecord.from_json(ENTRY)
    assert (record.pages, record.card["title"], record.ocr_pages, record.extraction) == (1, "Notes", [], "")
    assert json.dumps(record.to_json()) == json.dumps(ENTRY)  # same keys, same order
    with_ocr = {**ENTRY, "ocr_pages": [2, 3], "extraction": "ocr=auto"}
    assert DocumentRecord.from_json(with_ocr).to_json() == with_ocr


def test_an_ingest_writes_the_manifest_entries_it_wrote_before(tmp_path: Path) -> None:
    ws, _ = ingest([str(FIXTURES / "notes.md"), str(FIXTURES / "contract.pdf")], tmp_path / "ws")
    manifest = json.loads(ws.manifest_path.read_text())
    assert list(manifest["documents"]["notes.md"]) == list(ENTRY)
    assert list(manifest["documents"]["contract.pdf"]) == [*ENTRY, "extraction"]
    assert manifest["totals"] == {"documents": 2, "pages": sum(r.pages for r in ws.documents().values()),
                                  "chars": sum(r.chars for r in ws.documents().values()),
                                  "tokens": sum(r.tokens for r in ws.documents().values())}
    assert ws.documents()["contract.pdf"] == DocumentRecord.from_json(ws.meta("contract.pdf"))


def test_a_damaged_manifest_entry_is_one_clear_error(tmp_path: Path) -> None:
    entry = {k: v for k, v in ENTRY.items() if k != "pages"}
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "documents": {"notes.md": entry}}))
    reader = WorkspaceReader(tmp_path)
    assert list(reader.documents) == ["notes.md"]  # the raw view (model code's) still lists it
    with pytest.raises(WorkspaceError, match=r"manifest.json: a damaged document entry \(KeyError\('pages'\)\)"):
        _ = reader.records


def test_states_and_statuses_are_their_json_values() -> None:
    row = {"status": RunStatus.PARTIAL, "limit": Limit.MAX_COST, "state": CitationState.VERIFIED}
    assert json.dumps(row) == '{"status": "partial", "limit": "max-cost", "state": "verified"}'
    assert f"the {Limit.MAX_ITERATIONS} budget" == "the max-iterations budget"
    assert json.loads('"answered"') == RunStatus.ANSWERED and RunStatus("failed") is RunStatus.FAILED
    assert [s.mark for s in CitationState] == ["✓", "○", "✗"]


def test_a_failed_sub_call_reads_as_an_error_line_to_the_model() -> None:
    assert SubcallOutcome("42").for_model() == "42"
    assert SubcallOutcome.failure("interrupted").for_model() == "ERROR: interrupted"
    assert SubcallOutcome("ERROR: a log line").ok  # an answer, whatever its words


def test_sources_are_keys_by_identity_even_when_equal_in_every_field() -> None:
    a, b = Source("stdin", None, data=b"same"), Source("stdin", None, data=b"same")
    shas = {a: "1" * 64, b: "2" * 64}
    assert len(shas) == 2 and auto_key([a, b], shas) != auto_key([a], shas)
