"""Three honest citation marks, end to end from a scripted FINAL: ✓ a quotation found on the page,
○ cited but not checked, ✗ a page, line or quotation that is not there. The same states reach
`--json`, the Sources list, the saved trace, the HTML page and batch rows."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM

GATEWAY = FIXTURES.parent / "src" / "rlmcli" / "engine" / "gateway.py"
ANSWER = ('The contract ends if a party "enters liquidation" [contract.pdf p.7]. '
          'It must pay a termination fee of $500 [contract.pdf p.7]. '
          'The fee is set at [contract.pdf p.4] ("a monthly fee of EUR 99,999"). '
          'Retries are in [gateway.py:9999]. The module starts at [gateway.py:1]. '
          'Page [contract.pdf p.12] is cited too.')
EXPECTED = [("[contract.pdf p.7]", "verified"), ("[contract.pdf p.7]", "unchecked"), ("[contract.pdf p.4]", "failed"),
            ("[gateway.py:9999]", "failed"), ("[gateway.py:1]", "unchecked"), ("[contract.pdf p.12]", "failed")]
FINISH = ["```python\nprint(len(grep('fee')))\n```", f"```python\nFINAL({ANSWER!r})\n```"]


def _ask(server: FakeLLM, ws: Path, *extra: str) -> object:
    return run_rlm("ask", str(FIXTURES / "contract.pdf"), str(GATEWAY), "What ends the contract?", "-w", str(ws),
                   "--model", "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache", *extra,
                   env={"RLM_RETRY_BASE": "0.01"})


def test_each_citation_state_in_json_and_the_sources_list(server: FakeLLM, tmp_path: Path) -> None:
    server.script("gpt-4o-mini", list(FINISH))
    done = _ask(server, tmp_path / "ws", "--json")
    assert done.returncode == 0, done.stderr
    cites = json.loads(done.stdout)["citations"]
    assert [(c["text"], c["status"]) for c in cites] == EXPECTED
    assert cites[2]["quote"] == "a monthly fee of EUR 99,999"  # a quote after the citation is checked
    assert cites[3]["note"] == f"gateway.py has {len(GATEWAY.read_text().splitlines()):,} lines, not 9,999"
    server.script("gpt-4o-mini", list(FINISH))
    shown = _ask(server, tmp_path / "ws").stderr.decode().splitlines()
    sources = shown[shown.index("Sources:") + 1:]
    assert sources[0].startswith("  ✓ contract.pdf p.7 l.9: insolvent, enters liquidation")
    assert sources[1] == "  ○ contract.pdf p.7: cited, not checked"
    assert sources[2] == '  ✗ contract.pdf p.4: quoted text not on this page: "a monthly fee of EUR 99,999"'
    assert sources[3].startswith("  ✗ [gateway.py:9999]: gateway.py has ") and sources[5].startswith("  ✗ [contract.pdf p.12]")
    assert sources[4].startswith("  ○ gateway.py:1: cited, not checked")
    assert sources[6] == "  (✓ quote found on the page · ○ cited, not checked (no quotation) · ✗ failed)"


def test_the_trace_and_the_html_page_keep_the_marks(server: FakeLLM, tmp_path: Path) -> None:
    server.script("gpt-4o-mini", list(FINISH))
    ws = tmp_path / "ws"
    assert _ask(server, ws, "-q").returncode == 0
    replay = run_rlm("trace", "last", "-w", str(ws), env={"COLUMNS": "200"})
    text = replay.stdout.decode() + replay.stderr.decode()
    assert '✓ [contract.pdf p.7]: quote found: "enters liquidation" (l.9)' in text
    assert "○ [contract.pdf p.7]: cited, not checked (no quotation)" in text
    assert '✗ [contract.pdf p.4]: quoted text not on this page: "a monthly fee of EUR 99,999"' in text
    assert "✗ [contract.pdf p.12]: contract.pdf has 8 pages" in text
    page = tmp_path / "run.html"
    assert run_rlm("trace", "last", "-w", str(ws), "--html", str(page)).returncode == 0
    html = page.read_text()
    assert [html.count(f"data-status='{s}'") for s in ("verified", "unchecked", "failed")] == [1, 2, 3]


def test_batch_rows_carry_the_states(server: FakeLLM, tmp_path: Path) -> None:
    server.script("gpt-4o-mini", list(FINISH))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "files": [str(FIXTURES / "contract.pdf"), str(GATEWAY)],
                                "question": "What ends the contract?"}) + "\n")
    out = tmp_path / "out.jsonl"
    done = run_rlm("batch", str(jobs), "-o", str(out), "--model", "openai/gpt-4o-mini", "--api-base", server.base,
                   "--no-cache")
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text().splitlines()[0])
    assert [(c["text"], c["status"]) for c in row["citations"]] == EXPECTED
