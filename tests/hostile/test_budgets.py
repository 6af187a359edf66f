"""Budgets hold everywhere: --timeout is a wall for cells, sub-calls and batches; batches and
prompts are capped; replies are parsed in linear time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlmcli.engine.parse import code_blocks, textual_final
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM, Reply
from tests.hostile.conftest import LOOK, ask, cell, outputs


def test_timeout_is_a_wall_for_slow_cells(server: FakeLLM) -> None:
    sleepy = cell("import time\ntime.sleep(2.5)\nprint('slept')")
    result, seconds = ask(server, [LOOK] + [sleepy] * 6, "--timeout", "4")
    assert result.returncode == 3, outputs(result)
    assert "partial answer: the timeout budget was reached" in outputs(result)
    assert seconds < 4 + 2 + 1.5  # the wall, plus the bound, plus this process's own start


def test_timeout_is_a_wall_for_one_endless_cell_and_for_sub_calls(server: FakeLLM) -> None:
    server.responder("sub", lambda prompt: Reply("late", delay=30))
    result, seconds = ask(server, [LOOK, cell("print(llm_batch(['a', 'b', 'c']))")], "--sub-model", "openai/sub",
                          "--timeout", "3")
    assert result.returncode == 3 and seconds < 3 + 2 + 1.5, outputs(result)
    result, seconds = ask(server, [LOOK, cell("while True:\n    pass")], "--timeout", "3")
    assert result.returncode == 3 and seconds < 3 + 2 + 1.5
    assert "the run's time budget (--timeout) ran out" in outputs(result)


def test_a_batch_of_a_million_prompts_is_refused_at_once(server: FakeLLM) -> None:
    server.responder("sub", lambda prompt: "ok")
    result, seconds = ask(server, [LOOK, cell("r = llm_batch(['x'] * 1_000_000)"),
                                   cell("FINAL('done [contract.pdf p.1]')")], "--sub-model", "openai/sub")
    err = outputs(result)
    assert result.returncode == 0 and "llm_batch takes at most 2,000 prompts, not 1,000,000" in err
    assert server.calls("sub") == [] and seconds < 15


def test_an_over_long_prompt_is_refused_in_the_cell(server: FakeLLM) -> None:
    result, _ = ask(server, [LOOK, cell("print(llm_query('x' * 5_000_000, model='openai/sub'))"),
                             cell("FINAL('done [contract.pdf p.1]')")], "--sub-model", "openai/sub")
    assert "ERROR: this prompt is 5,000,000 characters; the limit is 4,000,000" in outputs(result)
    assert server.calls("sub") == []


def test_replies_full_of_unclosed_fences_and_finals_parse_in_linear_time() -> None:
    for hostile in ("FINAL(" * 300_000, "```\n" + "```x" * 300_000, "FINAL(" + ")x" * 500_000,
                    "\n".join(["FINAL(x"] * 300_000), "FINAL_VAR(" * 300_000):
        started = time.perf_counter()
        code_blocks(hostile)
        textual_final(hostile)
        assert time.perf_counter() - started < 3.0  # quadratic would be minutes


def test_the_trace_stays_bounded(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("sub", lambda prompt: "y" * 200_000)
    server.script("gpt-4o-mini", [LOOK, cell("r = llm_batch(['x' * 100_000] * 50)\nprint(len(r))"),
                                  cell("FINAL('done [contract.pdf p.1]')")])
    result = run_rlm("ask", str(FIXTURES / "contract.pdf"), "q", "--model", "openai/gpt-4o-mini", "--sub-model",
                     "openai/sub", "--api-base", server.base, "--no-cache", "--json", "-w", str(tmp_path / "ws"))
    assert result.returncode == 0, result.stderr
    trace = Path(json.loads(result.stdout)["trace"])
    assert trace.stat().st_size < 5_000_000  # 50 x (100 k prompt + 200 k reply) = 15 MB if kept whole
