"""The REPL itself and the helpers, on a real ingested workspace."""

from __future__ import annotations

import time
from pathlib import Path

from rlmcli.sandbox import Sandbox
from rlmcli.sandbox.helpers import helper_reference
from rlmcli.sandbox.process import SandboxLimits
from rlmcli.workspace.query import fts_query


def test_variables_persist_and_changes_are_reported(sandbox: Sandbox) -> None:
    first = sandbox.run("x = 41\ny = [1, 2]")
    assert sorted(first.changed) == ["x", "y"] and not first.error
    second = sandbox.run("x += 1\nprint(x, y)")
    assert second.stdout == "42 [1, 2]\n" and second.changed == ["x"]


def test_last_expression_is_shown_like_a_repl(sandbox: Sandbox) -> None:
    assert sandbox.run("2 + 3").stdout == "5\n"


def test_plain_python_works_on_the_tree(sandbox: Sandbox) -> None:
    code = (
        "import os, glob, json, re, collections, math, statistics, itertools\n"
        "pages = sorted(glob.glob('docs/contract.pdf/pages/*.txt'))\n"
        "print(len(pages), open(pages[6]).read().splitlines()[0])\n"
        "print(sorted(os.listdir('docs')))\n"
        "print(json.load(open('manifest.json'))['totals']['documents'])\n"
        "print(sum(1 for _ in os.walk('docs')) > 3)"
    )
    result = sandbox.run(code)
    assert result.stdout.splitlines() == ["8 6. Termination", "['contract.docx', 'contract.pdf', 'notes.md']", "3", "True"], result.stderr


def test_traceback_is_trimmed_to_the_models_code(sandbox: Sandbox) -> None:
    result = sandbox.run("def f(d):\n    return d['missing']\n\nf({})")
    assert result.error
    assert result.stderr.startswith("Traceback (most recent call last):\n  File \"<cell")
    assert "KeyError: 'missing'" in result.stderr and "kernel.py" not in result.stderr
    helper_error = sandbox.run("read('nope.pdf')")
    assert "NoSuchDocument: no document 'nope.pdf'" in helper_error.stderr
    assert "helpers.py" not in helper_error.stderr


def test_read_carries_citations(sandbox: Sandbox) -> None:
    out = sandbox.run("t = read('contract.pdf', 7)\nprint(t.cite)\nprint(t.splitlines()[0])\n"
                      "r = read('contract.pdf', page=(2, 3))\nprint(r.count('[contract.pdf p.'))\n"
                      "l = read('contract.pdf', 7, start=2, end=3)\nprint(l.cite)\nprint(l.splitlines()[1][:15])")
    assert out.stdout.splitlines() == ["[contract.pdf p.7]", "[contract.pdf p.7]", "2", "[contract.pdf p.7 l.2-3]",
                                       "6.1 Termination"], out.stderr


def test_grep_returns_hits_with_places(sandbox: Sandbox) -> None:
    out = sandbox.run("h = grep('insolvent')\nprint(h)\nprint(len(grep('TERMINAT', doc='contract.pdf')))\n"
                      "print(grep('Termination', ignore_case=False, doc='contract.docx', max_hits=1))\n"
                      "print(grep(r'\\(\\d+\\) days', doc='contract.pdf')[0])")
    lines = out.stdout.splitlines()
    assert "contract.pdf p.7 l.9: insolvent, enters liquidation or has a receiver appointed over its assets." in lines
    assert any(line.startswith("contract.docx p.1 l.") and "insolvent" in line for line in lines)
    assert lines[2] == "9"  # lines, not matches: p.1 (contents), p.5 (survives termination), p.7 (seven)
    assert lines[4].startswith("... stopped at max_hits=1")
    assert lines[5] == "contract.pdf p.3 l.4: periods unless either party gives notice of non-renewal at least ninety (90) days"


def test_grep_context_lines(sandbox: Sandbox) -> None:
    out = sandbox.run("print(grep('6.3 Insolvency', doc='contract.pdf', context=1)[0].text)")  # line 8
    assert out.stdout.splitlines() == [
        "within thirty (30) days of being notified of the breach.",
        "6.3 Insolvency. Either party may terminate immediately if the other party becomes",
        "insolvent, enters liquidation or has a receiver appointed over its assets."]


def test_search_ranks_the_answering_passage(sandbox: Sandbox) -> None:
    out = sandbox.run("r = search('what happens if a party becomes insolvent', k=3, doc='contract.pdf')\n"
                      "print(r[0].doc, r[0].page, r[0].heading)\nprint(search('EUR 48,500')[0].cite)")
    first, second = out.stdout.splitlines()
    assert first == "contract.pdf 7 6. Termination", out.stderr
    assert "48,500" in sandbox.run(f"print(read({second.split()[0][1:]!r}, {second.split()[1][2:]}))").stdout


def test_fts_query_keeps_numbers_and_terms_as_phrases() -> None:
    assert fts_query("What was the 10-K revenue of $48,500.00 in 2024?") == '"10 k" OR "revenue" OR "48 500 00" OR "2024"'
    assert fts_query("the of and") == ""


def test_context_holds_every_page_with_markers(sandbox: Sandbox) -> None:
    out = sandbox.run("print(len(context) > 5000, context.count('=== [contract.pdf p.'), context.index('=== [contract.pdf p.1] ==='))")
    has, count, first = out.stdout.split()
    assert has == "True" and count == "8" and first == "0"


def test_show_vars_and_final_var(sandbox: Sandbox) -> None:
    sandbox.run("answer = 'Clause 6 [contract.pdf p.7]'\nnums = [1, 2, 3]")
    shown = sandbox.run("SHOW_VARS()")
    assert "answer: str, len 27" in shown.stdout and "nums: list, len 3" in shown.stdout
    assert "read" not in shown.stdout
    assert sandbox.run("FINAL_VAR('answer')").final == "Clause 6 [contract.pdf p.7]"


def test_final_stops_the_cell_and_cannot_be_swallowed(sandbox: Sandbox) -> None:
    result = sandbox.run("try:\n    FINAL('yes')\nexcept Exception:\n    print('swallowed')\nprint('after')")
    assert result.final == "yes" and result.stdout == ""


def test_sub_calls_go_to_the_parent(workspace: Path) -> None:
    calls = []

    def serve(kind: str, payload: dict) -> object:
        calls.append((kind, payload))
        if kind == "llm_batch":
            return [f"echo:{p}" for p in payload["prompts"]]
        return f"answer to {payload.get('prompt') or payload.get('question')}"

    with Sandbox(workspace, on_request=serve) as sb:
        out = sb.run("print(llm_query('hi'))\nprint(llm_batch(['a', 'b']))\nprint(llm_query_batched(['c']))\n"
                     "print(rlm_query('q?', ['contract.pdf']))")
    assert out.stdout.splitlines() == ["answer to hi", "['echo:a', 'echo:b']", "['echo:c']", "answer to q?"]
    assert calls[3] == ("rlm_query", {"question": "q?", "target": ["contract.pdf"]})


def test_sub_call_time_does_not_count_against_the_cell_timeout(workspace: Path) -> None:
    def slow(kind: str, payload: dict) -> str:
        time.sleep(1.5)
        return "late but fine"

    with Sandbox(workspace, limits=SandboxLimits(cell_timeout=1), on_request=slow) as sb:
        result = sb.run("print(llm_query('x'))")
    assert result.stdout == "late but fine\n" and not result.timed_out


def test_failed_sub_call_is_an_exception_the_code_can_catch(workspace: Path) -> None:
    def broken(kind: str, payload: dict) -> str:
        raise ValueError("provider down")

    with Sandbox(workspace, on_request=broken) as sb:
        result = sb.run("try:\n    llm_query('x')\nexcept RuntimeError as e:\n    print('caught', e)")
    assert result.stdout == "caught llm_query failed: provider down\n"


def test_output_is_truncated_head_and_tail_for_the_model(sandbox: Sandbox) -> None:
    result = sandbox.run("print('HEAD' + 'x' * 50_000 + 'TAIL')")
    shown = result.for_model(10_000)
    assert shown.startswith("HEAD") and shown.rstrip().endswith("TAIL")
    assert "characters cut from the middle; 50,009 in all" in shown
    assert len(shown) < 10_200
    assert len(result.full_output()) == 50_009


def test_output_beyond_the_hard_cap_is_cut_and_said(workspace: Path) -> None:
    with Sandbox(workspace, limits=SandboxLimits(output_cap=1000)) as sb:
        result = sb.run("print('y' * 5000)")
    assert result.stdout_total == 5001 and len(result.stdout) == 1000
    assert "[stdout cut at 1,000 bytes; 5,001 bytes were printed]" in result.full_output()


def test_helper_reference_is_generated_from_docstrings() -> None:
    ref = helper_reference()
    written = (Path(__file__).resolve().parents[2] / "src/rlmcli/engine/prompts/helpers.txt").read_text()
    # the prompt the engine sends is this file: regenerate it when a helper's docstring changes
    # (python -c "from rlmcli.sandbox.helpers import helper_reference as h; print(h())" > src/rlmcli/engine/prompts/helpers.txt)
    assert written == ref + "\n"
    for name in ("ls(", "tree(", "read(", "grep(", "search(", "context", "llm_query(", "llm_batch(",
                 "llm_query_batched", "rlm_query(", "FINAL(", "FINAL_VAR(", "SHOW_VARS("):
        assert f"`{name}" in ref
    assert "max_hits: int = 200" in ref


def test_reset_forgets_everything_in_a_fresh_process(workspace: Path) -> None:
    with Sandbox(workspace) as sb:
        sb.run("secret = 'from the previous job'\nimport json")
        pid = sb.proc.pid if sb.proc else None
        sb.reset()
        result = sb.run("print('secret' in dir(), 'json' in dir(), len(grep('insolvent')))")
        assert result.stdout == "False False 2\n"
        assert sb.proc is not None and sb.proc.pid != pid
        sb.reset()
        booted = sb.proc.pid if sb.proc else None
        sb.reset()  # no cell ran in the fresh process: it is kept
        assert sb.proc is not None and sb.proc.pid == booted


def test_docs_ranks_documents_by_how_the_query_names_them(sandbox: Sandbox) -> None:
    out = sandbox.run("print(docs('the Master Services Agreement: fees')[0].doc)\n"
                      "print([d.doc for d in docs()])\nprint(docs()[0].title)\n"
                      "print(sorted({p.doc for p in search('insolvent', doc='contract.*')}))\n"
                      "print(len(grep('insolvent', doc='contract.*')), len(grep('insolvent', doc='*.md')))")
    lines = out.stdout.splitlines()
    assert lines[0] in ("contract.pdf", "contract.docx"), out.stderr
    assert lines[1] == "['contract.pdf', 'contract.docx', 'notes.md']"
    assert lines[2] == "MASTER SERVICES AGREEMENT — Northwind Traders Ltd and Contoso Analytics GmbH"
    assert lines[3] == "['contract.docx', 'contract.pdf']"
    assert lines[4] == "2 0"
