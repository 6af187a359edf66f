"""Arguments as people type them (issue #25): errors that say what is wrong and point the right
way, the README's focus example, the last workspace for `ask`, and the small things."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM

CONTRACT = str(FIXTURES / "contract.pdf")
LOOK = "```python\nprint(grep('terminat')[:2])\n```"
DONE = "```python\nFINAL('Clause 6 covers termination [contract.pdf p.7]')\n```"


def _err(result: object) -> str:
    return result.stderr.decode()  # type: ignore[attr-defined,no-any-return]


def _model(server: FakeLLM) -> list[str]:
    return ["--model", "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache"]


def test_each_wrong_argument_gets_the_line_that_fixes_it(server: FakeLLM, tmp_path: Path) -> None:
    shutil.copy(CONTRACT, tmp_path / "contract.pdf")
    (tmp_path / "GPL-3").write_text("GNU GENERAL PUBLIC LICENSE\nVersion 3\n")
    shutil.copy(FIXTURES / "notes.md", tmp_path / "notes.md")
    model = _model(server)
    cases = [
        (["ask", "contract2.pdf", "what are the termination clauses?", *model],
         "no such file 'contract2.pdf'; did you mean contract.pdf?"),
        (["search", "termination", "GPL-3"],
         "'GPL-3' is a file and 'termination' is not: the query comes last, in quotes: rlm search GPL-3 \"termination\""),
        (["ask", "contract.pdf", "notes.md", *model],
         "the question is missing: 'notes.md' is a file; put the question last, in quotes: "
         "rlm ask contract.pdf notes.md \"...\""),
        (["ask", "contract.pdf", "What", "is", "R", *model], "no such file 'What' - quote the question: rlm ask FILE \"...\""),
    ]
    for args, message in cases:
        result = run_rlm(*args, cwd=tmp_path)
        assert (result.returncode, _err(result)) == (2, f"rlm: error: {message}\n"), args
    assert server.requests == []  # nothing was asked

    assert run_rlm("ingest", "contract.pdf", "-w", "deal", cwd=tmp_path).returncode == 0
    misspelt = run_rlm("ls", "-w", "dael")
    assert misspelt.returncode == 1 and _err(misspelt).startswith("rlm: error: no workspace named 'dael'; did you mean deal?")
    doc = run_rlm("show", "contrat.pdf", "-w", "deal")
    assert doc.returncode == 1 and "did you mean contract.pdf?" in _err(doc)
    command = run_rlm("serach", "x")
    assert command.returncode == 2 and "Did you mean 'search'?" in _err(command)
    env = {"RLM_CONFIG": str(tmp_path / "config.toml")}
    typo = run_rlm("config", "set", "modle", "openai/x", env=env)
    assert typo.returncode == 2 and _err(typo) == "rlm: error: unknown setting 'modle'; did you mean model? (`rlm config` lists them)\n"
    negative = run_rlm("config", "set", "max_cost", "-1", env=env)
    assert (negative.returncode, _err(negative)) == (2, "rlm: error: max_cost must be at least 0, not -1\n")
    no_runs = run_rlm("trace", "-w", "deal")
    assert (no_runs.returncode, _err(no_runs)) == (1, "rlm: error: no runs in deal yet: rlm ask -w deal \"a question\"\n")


def test_the_readme_focus_example_focuses_and_never_adds_a_file_behind_the_users_back(server: FakeLLM, tmp_path: Path) -> None:
    """`rlm ask -w deal contract.pdf "..."` run where contract.pdf is: the question is about that
    document (the prompt says so) and nothing is ingested again; `-w deal notes.md` is refused."""
    run_rlm("ingest", CONTRACT, str(FIXTURES / "contract.docx"), "-w", "deal")
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(CONTRACT, here / "contract.pdf")  # the same file, in the folder the user works in
    shutil.copy(FIXTURES / "notes.md", here / "notes.md")
    before = json.loads(run_rlm("ls", "-w", "deal", "--json").stdout)["documents"]
    server.script("gpt-4o-mini", [LOOK, DONE])
    asked = run_rlm("ask", "-w", "deal", "contract.pdf", "what does clause 6 say?", *_model(server), cwd=here)
    assert asked.returncode == 0, _err(asked)
    prompt = server.requests[0]["messages"][1]["content"]
    assert "Focus on these documents: contract.pdf." in prompt
    assert json.loads(run_rlm("ls", "-w", "deal", "--json").stdout)["documents"] == before

    added = run_rlm("ask", "-w", "deal", "notes.md", "what was shortlisted?", *_model(server), cwd=here)
    assert added.returncode == 2
    assert _err(added) == ("rlm: error: notes.md is not in the workspace deal: add it with `rlm ingest notes.md -w deal`, "
                           "or ask about it alone: `rlm ask notes.md \"...\"`\n")
    assert json.loads(run_rlm("ls", "-w", "deal", "--json").stdout)["documents"] == before
    assert len(server.requests) == 2  # the refused question cost nothing


def test_ask_without_a_file_or_w_asks_the_workspace_used_last_and_says_which(server: FakeLLM) -> None:
    assert run_rlm("ingest", CONTRACT, "-w", "deal").returncode == 0
    server.script("gpt-4o-mini", [LOOK, DONE])
    asked = run_rlm("ask", "what are the termination clauses?", *_model(server))
    assert asked.returncode == 0 and asked.stdout == b"Clause 6 covers termination [contract.pdf p.7]\n"
    assert _err(asked).startswith("rlm: asking the workspace used last, deal (-w names another)\n")


def test_json_always_prints_one_object_even_when_the_run_cannot_start(tmp_path: Path) -> None:
    result = run_rlm("ask", CONTRACT, "what are the termination clauses?", "--model", "openai/gpt-4o-mini", "--json",
                     env={"OPENAI_API_KEY": None})
    assert result.returncode == 4
    record = json.loads(result.stdout)
    assert record["schema"] == "rlm.answer/1" and record["status"] == "failed" and record["answer"] == ""
    assert "needs an API key: set OPENAI_API_KEY" in record["error"] and record["usage"]["calls"] == 0
    assert "needs an API key" in _err(result)


def test_config_prints_toml_and_get_prints_one_value(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    env = {"RLM_CONFIG": str(cfg), "RLM_MAX_CALLS": "75", "RLM_MODEL": None}
    assert run_rlm("config", "set", "sub_models", "openai/a,openai/b", env=env).returncode == 0
    shown = run_rlm("config", env=env).stdout.decode()
    parsed = tomllib.loads(shown)  # every line is TOML: what it shows can be pasted into the file
    assert parsed["max_calls"] == 75 and parsed["sub_models"] == ["openai/a", "openai/b"] and parsed["cache"] is True
    assert "model" not in parsed and "# model =" in shown and "None" not in shown and "= '" not in shown
    assert run_rlm("config", "get", "max_calls", env=env).stdout == b"75\n"
    assert run_rlm("config", "get", "sub_models", env=env).stdout == b"openai/a,openai/b\n"
    unset = run_rlm("config", "get", "model", env=env)
    assert (unset.returncode, unset.stdout, _err(unset)) == (1, b"", "rlm: model is not set (default)\n")


def test_show_ends_with_a_newline_and_takes_the_path_it_was_ingested_from(tmp_path: Path) -> None:
    source = tmp_path / "contract.pdf"
    shutil.copy(CONTRACT, source)
    assert run_rlm("ingest", str(source), "-w", "deal").returncode == 0
    shown = run_rlm("show", str(source), "--page", "7", "-w", "deal")
    assert shown.returncode == 0 and shown.stdout.startswith(b"6. Termination") and shown.stdout.endswith(b"\n")
    assert not shown.stdout.endswith(b"\n\n")


def test_search_scores_in_a_small_workspace_are_never_shown_as_zero(tmp_path: Path) -> None:
    text = tmp_path / "one.txt"
    text.write_text("alpha beta\n\nalpha gamma\n")  # a word on every page: BM25 gives it next to nothing
    run_rlm("ingest", str(text), "-w", "tiny")
    shown = run_rlm("search", "alpha", "-k", "1", "-w", "tiny").stdout.decode()
    assert "score=0.00" not in shown and "score=0 " not in shown
    score = json.loads(run_rlm("search", "alpha", "-k", "1", "-w", "tiny", "--json").stdout)["passages"][0]["score"]
    assert 0 < score < 0.01


def test_the_html_trace_lists_the_sources_with_the_marks_ask_printed(server: FakeLLM, tmp_path: Path) -> None:
    import html
    import re

    answer = ('Either party may end it if the other "enters liquidation" [contract.pdf p.7]; see also '
              '[contract.pdf p.99].')
    server.script("gpt-4o-mini", [LOOK, f"```python\nFINAL({answer!r})\n```"])
    asked = run_rlm("ask", CONTRACT, "when can a party terminate?", "-w", str(tmp_path / "ws"), *_model(server))
    assert asked.returncode == 0
    printed = _err(asked).split("Sources:\n", 1)[1].splitlines()
    printed = [line.strip() for line in printed if line.startswith("  ") and not line.strip().startswith("(")]  # not the legend
    assert len(printed) == 2
    page = tmp_path / "run.html"
    assert run_rlm("trace", "-w", str(tmp_path / "ws"), "--html", str(page)).returncode == 0
    section = page.read_text().split("<section class='sources'>", 1)[1].split("</section>", 1)[0]
    items = [html.unescape(item) for item in re.findall(r"<li[^>]*>(.*?)</li>", section)]
    assert [item for item in items if not item.startswith("(")] == printed
