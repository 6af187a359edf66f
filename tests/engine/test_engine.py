"""The engine against a fake OpenAI-compatible server, through litellm over real HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rlmcli.ask import ask
from rlmcli.engine import events as ev
from rlmcli.engine.budget import Limits
from rlmcli.engine.events import Recorder
from rlmcli.engine.models import ModelConfig
from rlmcli.workspace.ingest import ingest
from rlmcli.workspace.store import Workspace
from tests.conftest import FIXTURES
from tests.fakeserver import FakeLLM, Reply

ROOT, SUB = "gpt-4o-mini", "sub-model"  # the root has a litellm price; the sub model does not


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace, _ = ingest([str(FIXTURES / "contract.pdf"), str(FIXTURES / "contract.docx")], tmp_path / "ws")
    return workspace


def config(server: FakeLLM, **kw: object) -> ModelConfig:
    base = dict(model=f"openai/{ROOT}", sub_model=f"openai/{SUB}", api_base=server.base, retry_base=0.01, cache=False)
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def code(src: str) -> str:
    return f"Working on it.\n```python\n{src}\n```"


def test_multi_iteration_run_greps_reads_batches_and_finishes(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [
        code("hits = grep('terminat', doc='contract.pdf')\nprint(len(hits))"),
        code("pages = sorted({h.page for h in hits})\ntexts = [read('contract.pdf', p) for p in pages]\n"
             "notes = llm_batch(['List termination rights in: ' + t for t in texts])\nprint(notes)"),
        code("FINAL('Convenience (180 days), cause (30-day cure), insolvency [contract.pdf p.7]')"),
    ])
    server.responder(SUB, lambda prompt: "rights found" if "6.1" in prompt else "none")
    rec = Recorder()
    result = ask(ws, "What are the termination clauses?", config(server), Limits(), rec, "auto")
    assert result.status == "answered" and result.iterations == 3
    assert result.answer == "Convenience (180 days), cause (30-day cure), insolvency [contract.pdf p.7]"
    kinds = rec.kinds()
    assert kinds[0] == ev.RUN_STARTED and kinds[-2:] == [ev.FINAL_ANSWER, ev.RUN_FINISHED]
    assert kinds.count(ev.ITERATION_STARTED) == 3 and kinds.count(ev.CODE_CELL) == 3
    outputs = [e.data["output"] for e in rec.events if e.kind == ev.CELL_OUTPUT]
    assert outputs[0] == "9\n"
    assert "'rights found'" in outputs[1] and "'none'" in outputs[1]
    # the first user message describes the workspace, never its text
    first_user = server.calls(ROOT)[0]["messages"][1]["content"]
    assert "contract.pdf (pdf, 8 pages" in first_user and "6.1 Termination for convenience" not in first_user
    assert "grep(pattern" in server.calls(ROOT)[0]["messages"][0]["content"]  # the generated helper reference
    usage = result.usage
    assert usage["per_depth"]["0"]["calls"] == 3 and usage["per_depth"]["1"]["calls"] == 3
    assert usage["per_model"][f"openai/{ROOT}"]["cost"] > 0
    assert usage["per_model"][f"openai/{SUB}"]["cost"] is None  # no price known: tokens only
    assert usage["read_ratio"] > 0


def test_recursion_at_depth_two(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [code("sub = rlm_query('What is the notice period for convenience?', ['contract.pdf'])\nprint(sub)"),
                         code("FINAL('180 days, per the sub-run: ' + sub)")])
    server.script(SUB, [code("print(grep('convenience', doc='contract.pdf')[0])"),
                        code("FINAL('180 days [contract.pdf p.7]')")])
    rec = Recorder()
    result = ask(ws, "notice period?", config(server), Limits(max_depth=2), rec)
    assert result.answer == "180 days, per the sub-run: 180 days [contract.pdf p.7]"
    child_started = [e for e in rec.events if e.kind == ev.RUN_STARTED and e.depth == 1]
    assert child_started and "Focus on these documents: contract.pdf" in server.calls(SUB)[0]["messages"][1]["content"]
    assert result.usage["per_depth"]["1"]["calls"] == 2


def test_recursion_over_a_text_uses_a_temporary_workspace_that_is_removed(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [code("print(rlm_query('What is the fee?', 'Memo: the fee is EUR 48,500.'))"), code("FINAL('ok')")])
    server.script(SUB, [code("print(read('stdin', 1))"), code("FINAL('EUR 48,500 [stdin p.1]')")])
    rec = Recorder()
    ask(ws, "q", config(server), Limits(max_depth=2), rec)
    child = next(e for e in rec.events if e.kind == ev.RUN_STARTED and e.depth == 1)
    assert [e.data["output"] for e in rec.events if e.kind == ev.CELL_OUTPUT and e.depth == 1][0].endswith(
        "Memo: the fee is EUR 48,500.\n")
    assert [e.data["output"] for e in rec.events if e.kind == ev.CELL_OUTPUT and e.depth == 0][0] == "EUR 48,500 [stdin p.1]\n"
    assert not Path(child.data["workspace"]).exists()


def test_rlm_query_beyond_max_depth_is_a_plain_call_with_the_text(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [code("print(rlm_query('Summarize', 'The fee is EUR 48,500.'))"), code("FINAL('ok')")])
    server.responder(SUB, lambda prompt: "plain: " + prompt.splitlines()[-1])
    rec = Recorder()
    ask(ws, "q", config(server), Limits(max_depth=1), rec)
    out = [e.data["output"] for e in rec.events if e.kind == ev.CELL_OUTPUT][0]
    assert out == "plain: The fee is EUR 48,500.\n"
    assert not [e for e in rec.events if e.kind == ev.RUN_STARTED and e.depth == 1]


def test_max_iterations_asks_for_a_best_answer_and_marks_it_partial(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [code("print('still looking')")] * 3 + ["Best guess: 180 days [contract.pdf p.7]"])
    result = ask(ws, "q", config(server), Limits(max_iterations=3))
    assert result.status == "partial" and result.limit == "max-iterations"
    assert result.answer == "Best guess: 180 days [contract.pdf p.7]"
    assert "iteration limit" in server.calls(ROOT)[-1]["messages"][-1]["content"]


@pytest.mark.parametrize(("limits", "limit"), [
    (Limits(max_calls=2), "max-calls"),
    (Limits(max_tokens=600), "max-tokens"),
    (Limits(max_cost=1e-9), "max-cost"),
])
def test_budgets_stop_cleanly_with_a_partial_answer(server: FakeLLM, ws: Workspace, limits: Limits, limit: str) -> None:
    server.responder(ROOT, lambda prompt: code("print(llm_query('hello'))"))
    server.responder(SUB, lambda prompt: "hi")
    result = ask(ws, "q", config(server), limits)
    assert result.status == "partial" and result.limit == limit
    paid = result.usage["calls"] - result.usage["cache_hits"]
    assert paid <= max(limits.max_calls, 3)


def test_budget_warning_at_80_percent(server: FakeLLM, ws: Workspace) -> None:
    server.responder(ROOT, lambda prompt: code("print(llm_query('hello'))"))
    server.responder(SUB, lambda prompt: "hi")
    rec = Recorder()
    ask(ws, "q", config(server), Limits(max_calls=10), rec)
    warnings = [e.data for e in rec.events if e.kind == ev.BUDGET_WARNING]
    assert warnings == [{"limit": "max-calls", "used": 8.0, "max": 10.0}]
    assert rec.kinds().index(ev.BUDGET_WARNING) < rec.kinds().index(ev.RUN_FINISHED)


def test_timeout_budget(server: FakeLLM, ws: Workspace) -> None:
    server.responder(ROOT, lambda prompt: Reply(code("print(1)"), delay=0.4))
    started = time.monotonic()
    result = ask(ws, "q", config(server), Limits(timeout=1.5))
    assert result.status == "partial" and result.limit == "timeout"
    assert time.monotonic() - started < 6


def test_sub_call_budget_errors_reach_the_model_as_text(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [code("print(llm_batch(['a', 'b', 'c']))")])
    server.responder(SUB, lambda prompt: "ok")
    rec = Recorder()
    result = ask(ws, "q", config(server), Limits(max_calls=3), rec)
    out = [e.data["output"] for e in rec.events if e.kind == ev.CELL_OUTPUT][0]
    assert out.count("'ok'") == 2 and "ERROR: budget reached: max-calls" in out
    assert result.status == "partial" and result.limit == "max-calls"


def test_429_then_success_is_retried(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [Reply(status=429), Reply(status=503), code("FINAL('done')")])
    result = ask(ws, "q", config(server), Limits())
    assert result.status == "answered" and len(server.calls(ROOT)) == 3


def test_persistent_500_fails_with_the_providers_message(server: FakeLLM, ws: Workspace) -> None:
    server.responder(ROOT, lambda prompt: Reply(status=500))
    result = ask(ws, "q", config(server, retries=2), Limits())
    assert result.status == "failed" and "fake error 500" in (result.error or "")
    assert len(server.calls(ROOT)) == 3


def test_request_timeout_is_retried_then_reported(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [Reply(hang=True), code("FINAL('after a timeout')")])
    result = ask(ws, "q", config(server, timeout=1.0), Limits())
    assert result.status == "answered" and result.answer == "after a timeout"


def test_malformed_json_is_retried(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [Reply(raw=b"{not json"), code("FINAL('recovered')")])
    result = ask(ws, "q", config(server), Limits())
    assert result.answer == "recovered" and len(server.calls(ROOT)) == 2


def test_empty_reply_is_retried_and_a_reply_without_code_is_nudged(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [Reply(""), "I think I should look at the documents.", "FINAL(Answer in text [contract.pdf p.7])"])
    result = ask(ws, "q", config(server), Limits())
    assert result.status == "answered" and result.answer == "Answer in text [contract.pdf p.7]"
    third = server.calls(ROOT)[2]["messages"][-1]["content"]
    assert "no ```python code block" in third


def test_textual_final_var_fallback(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [code("answer = 'from a variable'"), "FINAL_VAR(answer)"])
    assert ask(ws, "q", config(server), Limits()).answer == "from a variable"


def test_concurrency_bound_under_200_batched_calls(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [code("r = llm_batch([f'item {i}' for i in range(200)])\n"
                              "print(all(a == f'done item {i}' for i, a in enumerate(r)), len(r))"),
                         code("FINAL('ok')")])
    server.responder(SUB, lambda prompt: Reply(f"done {prompt}", delay=0.02))
    rec = Recorder()
    result = ask(ws, "q", config(server), Limits(concurrency=8, max_calls=300), rec)
    assert [e.data["output"] for e in rec.events if e.kind == ev.CELL_OUTPUT][0] == "True 200\n"
    assert server.max_in_flight <= 8 + 1  # the root call may overlap nothing: sub-calls alone are bounded
    assert len(server.calls(SUB)) == 200 and result.status == "answered"


def test_a_failed_batch_item_fails_alone(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [code("print(llm_batch(['good 1', 'bad', 'good 2']))"), code("FINAL('ok')")])
    server.responder(SUB, lambda prompt: Reply(status=400) if prompt == "bad" else f"fine {prompt}")
    rec = Recorder()
    ask(ws, "q", config(server), Limits(), rec)
    out = [e.data["output"] for e in rec.events if e.kind == ev.CELL_OUTPUT][0]
    assert out.startswith("['fine good 1', 'ERROR: the model call failed:") and out.rstrip().endswith("'fine good 2']")


def test_over_long_sub_prompt_is_refused_before_sending(server: FakeLLM, ws: Workspace) -> None:
    server.script(ROOT, [code("print(llm_query('word ' * 200_000, model='openai/gpt-4o-mini'))"), code("FINAL('ok')")])
    rec = Recorder()
    ask(ws, "q", config(server), Limits(), rec)
    out = [e.data["output"] for e in rec.events if e.kind == ev.CELL_OUTPUT][0]
    assert out.startswith("ERROR: this prompt is 200,001 tokens but openai/gpt-4o-mini accepts about 128,000")
    assert len(server.requests) == 2  # the two root calls only


def test_cache_makes_a_second_run_free_and_instant(server: FakeLLM, ws: Workspace, rlm_home: Path) -> None:
    script = [code("print(llm_query('summarize clause 6'))"), code("FINAL('cached answer')")]
    server.script(ROOT, list(script))
    server.responder(SUB, lambda prompt: "clause 6 is about termination")
    first = ask(ws, "q", config(server, cache=True), Limits())
    requests = len(server.requests)
    second = ask(ws, "q", config(server, cache=True), Limits())
    assert second.answer == first.answer == "cached answer"
    assert len(server.requests) == requests == 3
    assert second.usage["cache_hits"] == 3 and second.usage["cost"] == 0
    assert (rlm_home / "cache" / "responses.sqlite").exists()


def test_api_key_from_the_named_environment_variable(server: FakeLLM, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-abc")
    server.script(ROOT, [code("FINAL('ok')")])
    ask(ws, "q", config(server, api_key_env="MY_LLM_KEY"), Limits())
    assert server.requests[0]["auth"] == "Bearer sk-test-abc"


def test_workspace_description_stays_bounded_with_10000_documents(tmp_path: Path) -> None:
    from rlmcli.engine.loop import describe_workspace
    from rlmcli.tokens import count_tokens

    many = tmp_path / "many"
    many.mkdir()
    for i in range(10_000):
        (many / f"note{i:05d}.txt").write_text(f"note {i}\n")
    workspace, _ = ingest([str(many)], tmp_path / "ws")
    text = describe_workspace(workspace)
    assert count_tokens(text) < 2000
    assert "10,000 documents" in text and "more documents: use ls('docs')" in text
    json.dumps(text)
