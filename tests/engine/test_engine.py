"""The engine in-process with the scripted provider: the loop, sub-calls, recursion, budgets,
and real models' habits. Transports and provider faults are in test_providers.py (over HTTP)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from rlmcli.engine import events as ev
from rlmcli.engine.events import Recorder
from rlmcli.engine.providers.base import ProviderError
from rlmcli.engine.providers.scripted import Scripted, ScriptedProvider
from rlmcli.workspace.ingest import ingest
from rlmcli.workspace.store import Workspace
from tests.conftest import FIXTURES, ask_question

ROOT, SUB = "root", "sub"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace, _ = ingest([str(FIXTURES / "contract.pdf"), str(FIXTURES / "contract.docx")],
                          tmp_path_factory.mktemp("engine") / "ws")
    return workspace


@pytest.fixture
def model() -> ScriptedProvider:
    return ScriptedProvider()


def code(src: str) -> str:
    return f"Working on it.\n```python\n{src}\n```"


LOOK = code("print(len(grep('termination')))")


def outputs(rec: Recorder, depth: int | None = None) -> list[str]:
    return [e.output for e in rec.of(ev.CellOutput) if depth is None or e.depth == depth]


def test_multi_iteration_run_greps_reads_batches_and_finishes(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [
        code("hits = grep('terminat', doc='contract.pdf')\nprint(len(hits))"),
        code("pages = sorted({h.page for h in hits})\ntexts = [read('contract.pdf', p) for p in pages]\n"
             "notes = llm_batch(['List termination rights in: ' + t for t in texts])\nprint(notes)"),
        code("FINAL('Convenience (180 days), cause (30-day cure), insolvency [contract.pdf p.7]')"),
    ])
    model.responder(SUB, lambda prompt: "rights found" if "6.1" in prompt else "none")
    rec = Recorder()
    result = ask_question(ws, "What are the termination clauses?", model, rec)
    assert result.status == "answered" and result.iterations == 3
    assert result.answer == "Convenience (180 days), cause (30-day cure), insolvency [contract.pdf p.7]"
    kinds = rec.kinds()
    assert kinds[0] == "run_started" and kinds[-3:] == ["final_answer", "run_finished", "citations"]  # marks last
    assert kinds.count("iteration_started") == 3 and kinds.count("code_cell") == 3
    out = outputs(rec)
    assert out[0] == "9\n" and "'rights found'" in out[1] and "'none'" in out[1]
    # the first user message describes the workspace, never its text
    first = model.calls(ROOT)[0].messages
    assert "contract.pdf (pdf, 8 pages" in first[1]["content"] and "6.1 Termination for convenience" not in first[1]["content"]
    assert "grep(pattern" in first[0]["content"]  # the generated helper reference
    usage = result.usage
    assert usage["per_depth"]["0"]["calls"] == 3 and usage["per_depth"]["1"]["calls"] == 3
    assert usage["read_ratio"] > 0
    # every event carries its run; the batch's progress events name its sub-call
    assert {e.run_id for e in rec.events} == {result.run_id}
    batch = rec.of(ev.SubcallStarted)[0]
    assert batch.call == "llm_batch" and [p.call_id for p in rec.of(ev.SubcallProgress)] == [batch.call_id] * 3
    assert [c.call_id for c in rec.of(ev.ModelCall) if c.depth == 1] == [batch.call_id] * 3


def test_costs_come_from_litellms_price_map(ws: Workspace) -> None:
    model = ScriptedProvider()
    model.script("gpt-4o-mini", [code("print(llm_query('hi'))"), code("FINAL('x')")])
    model.responder("unpriced", lambda p: "hello")
    result = ask_question(ws, "q", model, model="openai/gpt-4o-mini", sub_model="openai/unpriced")
    assert result.usage["per_model"]["openai/gpt-4o-mini"]["cost"] > 0
    assert result.usage["per_model"]["openai/unpriced"]["cost"] is None  # no price known: tokens only
    assert result.usage["cost_unknown_calls"] == 1
    from rlmcli.engine.providers import catalog

    assert catalog.cost("openai/gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)


def test_recursion_at_depth_two_hangs_the_child_run_under_its_call(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("sub = rlm_query('What is the notice period for convenience?', ['contract.pdf'])\nprint(sub)"),
                        code("FINAL('180 days, per the sub-run: ' + sub)")])
    model.script(SUB, [code("print(grep('convenience', doc='contract.pdf')[0])"),
                       code("FINAL('180 days [contract.pdf p.7]')")])
    rec = Recorder()
    result = ask_question(ws, "notice period?", model, rec, max_depth=2)
    assert result.answer == "180 days, per the sub-run: 180 days [contract.pdf p.7]"
    call = rec.of(ev.SubcallStarted)[0]
    child = [e for e in rec.of(ev.RunStarted) if e.depth == 1]
    assert len(child) == 1 and child[0].parent_id == call.call_id and child[0].run_id == f"{result.run_id}/{call.call_id}"
    assert "Focus on these documents: contract.pdf" in model.calls(SUB)[0].messages[1]["content"]
    assert result.usage["per_depth"]["1"]["calls"] == 2


def test_recursion_over_a_text_uses_a_temporary_workspace_that_is_removed(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("print(rlm_query('What is the fee?', 'Memo: the fee is EUR 48,500.'))"), code("FINAL('ok')")])
    model.script(SUB, [code("print(read('stdin', 1))"), code("FINAL('EUR 48,500 [stdin p.1]')")])
    rec = Recorder()
    ask_question(ws, "q", model, rec, max_depth=2)
    child = next(e for e in rec.of(ev.RunStarted) if e.depth == 1)
    assert outputs(rec, 1)[0].endswith("Memo: the fee is EUR 48,500.\n")
    assert outputs(rec, 0)[0] == "EUR 48,500 [stdin p.1]\n"
    assert not Path(child.workspace).exists()


def test_rlm_query_beyond_max_depth_is_a_plain_call_with_the_text(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("print(rlm_query('Summarize', 'The fee is EUR 48,500.'))"), code("FINAL('ok')")])
    model.responder(SUB, lambda prompt: "plain: " + prompt.splitlines()[-1])
    rec = Recorder()
    ask_question(ws, "q", model, rec, max_depth=1)
    assert outputs(rec)[0] == "plain: The fee is EUR 48,500.\n"
    assert not [e for e in rec.of(ev.RunStarted) if e.depth == 1]


def test_max_iterations_asks_for_a_best_answer_and_marks_it_partial(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("print('still looking')")] * 3 + ["Best guess: 180 days [contract.pdf p.7]"])
    result = ask_question(ws, "q", model, max_iterations=3)
    assert result.status == "partial" and result.limit == "max-iterations"
    assert result.answer == "Best guess: 180 days [contract.pdf p.7]"
    assert "iteration limit" in model.calls(ROOT)[-1].messages[-1]["content"]


@pytest.mark.parametrize(("values", "limit"), [
    ({"max_calls": 2}, "max-calls"),
    ({"max_tokens": 600}, "max-tokens"),
    ({"max_cost": 1e-9}, "max-cost"),
])
def test_budgets_stop_cleanly_with_a_partial_answer(ws: Workspace, values: dict[str, object], limit: str) -> None:
    model = ScriptedProvider()
    model.responder("gpt-4o-mini", lambda prompt: code("print(llm_query('hello'))"))
    model.responder(SUB, lambda prompt: "hi")
    result = ask_question(ws, "q", model, model="openai/gpt-4o-mini", **values)  # priced, so max-cost can bite
    assert result.status == "partial" and result.limit == limit
    paid = result.usage["calls"] - result.usage["cache_hits"]
    assert paid <= max(int(values.get("max_calls", 3)), 3)  # type: ignore[call-overload]


def test_budget_warning_at_80_percent(model: ScriptedProvider, ws: Workspace) -> None:
    model.responder(ROOT, lambda prompt: code("print(llm_query('hello'))"))
    model.responder(SUB, lambda prompt: "hi")
    rec = Recorder()
    ask_question(ws, "q", model, rec, max_calls=10)
    warnings = [(w.limit, w.used, w.max) for w in rec.of(ev.BudgetWarning)]
    assert warnings == [("max-calls", 8.0, 10.0)]
    assert rec.kinds().index("budget_warning") < rec.kinds().index("run_finished")


def test_timeout_budget(model: ScriptedProvider, ws: Workspace) -> None:
    model.responder(ROOT, lambda prompt: Scripted(code("print(1)"), delay=0.4))
    result = ask_question(ws, "q", model, timeout=1.5)
    assert result.status == "partial" and result.limit == "timeout"
    # at 0.4 s a reply, a 1.5 s budget ends after a handful of calls, not the 20 iterations allowed
    assert 1 <= len(model.calls(ROOT)) <= 6


def test_sub_call_budget_errors_reach_the_model_as_text(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("print(llm_batch(['a', 'b', 'c']))")])
    model.responder(SUB, lambda prompt: "ok")
    rec = Recorder()
    result = ask_question(ws, "q", model, rec, max_calls=3)
    out = outputs(rec)[0]
    assert out.count("'ok'") == 2 and "ERROR: budget reached: max-calls" in out
    assert result.status == "partial" and result.limit == "max-calls"


def test_textual_final_var_fallback(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("answer = read('contract.pdf', 1)[:20]"), "FINAL_VAR(answer)"])
    assert ask_question(ws, "q", model).answer == "[contract.pdf p.1]\nM"


def test_concurrency_bound_under_200_batched_calls(ws: Workspace) -> None:
    model = ScriptedProvider()
    in_flight, peak, lock = [0], [0], threading.Lock()

    def respond(prompt: str) -> Scripted:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.01)
        with lock:
            in_flight[0] -= 1
        return Scripted(f"done {prompt}")

    model.script(ROOT, [code("r = llm_batch([f'item {i}' for i in range(200)])\n"
                             "print(all(a == f'done item {i}' for i, a in enumerate(r)), len(r))"),
                        code("FINAL('ok')")])
    model.responder(SUB, respond)
    rec = Recorder()
    result = ask_question(ws, "q", model, rec, concurrency=8, max_calls=300)
    assert outputs(rec)[0] == "True 200\n"
    assert 2 <= peak[0] <= 8 and len(model.calls(SUB)) == 200 and result.status == "answered"


def test_a_failed_batch_item_fails_alone(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("print(llm_batch(['good 1', 'bad', 'good 2']))"), code("FINAL('ok')")])
    model.responder(SUB, lambda prompt: ProviderError("bad request", "bad_request", 400) if prompt == "bad" else f"fine {prompt}")
    rec = Recorder()
    ask_question(ws, "q", model, rec)
    out = outputs(rec)[0]
    assert out.startswith("['fine good 1', 'ERROR: the model call failed:") and out.rstrip().endswith("'fine good 2']")
    [finished] = [e for e in rec.of(ev.SubcallFinished) if e.call == "llm_batch"]
    assert (finished.ok, finished.failed, finished.done) == (False, 1, 3)


def test_a_sub_model_answer_that_starts_with_error_is_an_answer(model: ScriptedProvider, ws: Workspace) -> None:
    """Whether a sub-call failed is known from how it ended, not read back from its text: a model
    may well answer "ERROR: ..." (a log line it was asked to find)."""
    model.script(ROOT, [code("print(llm_query('the first log line'))\nprint(llm_batch(['a', 'b']))"), code("FINAL('ok')")])
    model.responder(SUB, lambda prompt: "ERROR: disk full at 03:12")
    rec = Recorder()
    ask_question(ws, "q", model, rec)
    assert outputs(rec)[0].startswith("ERROR: disk full at 03:12\n")
    finished = rec.of(ev.SubcallFinished)
    assert [(e.call, e.ok, e.failed, e.error) for e in finished] == [("llm_query", True, 0, None),
                                                                     ("llm_batch", True, 0, None)]


def test_over_long_sub_prompt_is_refused_before_sending(ws: Workspace) -> None:
    model = ScriptedProvider()
    model.script(ROOT, [code("print(llm_query('word ' * 200_000, model='openai/gpt-4o-mini'))"), code("FINAL('ok')")])
    rec = Recorder()
    ask_question(ws, "q", model, rec, sub_model="openai/gpt-4o-mini")
    assert outputs(rec)[0].startswith("ERROR: this prompt is 200,001 tokens but openai/gpt-4o-mini accepts about 128,000")
    assert len(model.requests) == 2  # the two root calls only


def test_model_code_may_name_only_the_models_the_user_allowed(ws: Workspace) -> None:
    model = ScriptedProvider()
    model.script(ROOT, [code("print(llm_query('hi', model='openai/sub'))\n"
                             "print(llm_query('x', model='openai/gpt-4o@evil.example.com'))"),
                        code("print(llm_query('hi', model='openai/extra'))"), code("FINAL('ok')")])
    model.responder(SUB, lambda p: "from sub")
    model.responder("extra", lambda p: "from extra")
    rec = Recorder()
    ask_question(ws, "q", model, rec, sub_models=["openai/extra"])
    first, second = outputs(rec)[:2]
    assert first.startswith("from sub\n") and "model 'openai/gpt-4o@evil.example.com' is not allowed" in first
    assert second == "from extra\n"
    assert {r.model for r in model.requests} == {"openai/root", "openai/sub", "openai/extra"}


def test_cache_makes_a_second_run_free_and_instant(model: ScriptedProvider, ws: Workspace, rlm_home: Path) -> None:
    script = [code("print(llm_query('summarize clause 6'))"), code("FINAL('cached answer')")]
    model.script(ROOT, list(script))
    model.responder(SUB, lambda prompt: "clause 6 is about termination")
    first = ask_question(ws, "q", model, cache=True)
    sent = len(model.requests)
    second = ask_question(ws, "q", model, cache=True)
    assert second.answer == first.answer == "cached answer"
    assert len(model.requests) == sent == 3
    assert second.usage["cache_hits"] == 3 and second.usage["cost"] is None  # openai/root has no price: unknown
    assert [c["cached"] for c in second.calls] == [True, True, True] and not any(c["cached"] for c in first.calls)
    assert (rlm_home / "cache" / "responses.sqlite").exists()


def test_workspace_description_stays_bounded_with_10000_documents(tmp_path: Path) -> None:
    from rlmcli.engine.loop import describe_workspace
    from rlmcli.records import DocumentRecord
    from rlmcli.tokens import count_tokens
    from rlmcli.workspace.reader import WorkspaceReader

    # The description reads only the manifest: a manifest of 10,000 documents is enough.
    docs = {f"many-note{i:05d}.txt": DocumentRecord(
        name=f"many-note{i:05d}.txt", source=f"/notes/many-note{i:05d}.txt", aliases=[], sha256=f"{i:064x}", size=8,
        mtime_ns=1, type="text", extractor="text", pages=1, chars=8, tokens=3).to_json() for i in range(10_000)}
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "documents": docs, "totals": {
        "documents": 10_000, "pages": 10_000, "tokens": 30_000, "chars": 80_000}}))
    text = describe_workspace(WorkspaceReader(tmp_path))
    assert count_tokens(text) < 2000
    assert "10,000 documents" in text and "more documents: use ls('docs')" in text
    json.dumps(text)


# ---- real models' habits -------------------------------------------------------------------------

def test_empty_replies_end_the_run_as_a_provider_failure_within_seconds(model: ScriptedProvider, ws: Workspace) -> None:
    model.responder(ROOT, lambda prompt: "")
    rec = Recorder()
    result = ask_question(ws, "q", model, rec)
    assert result.status == "failed" and result.error_kind == "empty"
    assert result.error == "the model returned 3 empty replies in a row"
    assert len(model.calls(ROOT)) == 3  # three calls, then the end: no retries of an empty reply
    assert [n.reason for n in rec.of(ev.Notice)] == ["empty-reply", "empty-reply"]


def test_replies_without_code_are_nudged_then_fail(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, ["I think I should look at the documents.", LOOK, "Let me think.", "Still thinking.", "Hmm."])
    result = ask_question(ws, "q", model)
    assert result.status == "failed" and result.error == "the model returned 3 replies with neither code nor FINAL in a row"
    assert "no ```python code block" in model.calls(ROOT)[1].messages[-1]["content"]


def test_a_final_before_looking_gets_one_nudge(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("FINAL('a guess')"), "FINAL(the same guess)"])
    rec = Recorder()
    result = ask_question(ws, "q", model, rec)
    assert result.status == "answered" and result.answer == "the same guess"  # a second FINAL is taken
    assert [n.reason for n in rec.of(ev.Notice)] == ["early-final"]
    assert "before any code looked at the documents" in model.calls(ROOT)[1].messages[-1]["content"]


def test_a_final_after_looking_is_taken_at_once(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("t = read('contract.pdf', 7)\nFINAL('insolvency [contract.pdf p.7]')")])
    rec = Recorder()
    assert ask_question(ws, "q", model, rec).answer == "insolvency [contract.pdf p.7]"
    assert not rec.of(ev.Notice)


def test_opening_a_page_file_counts_as_looking(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("text = open('docs/contract.pdf/pages/0007.txt').read()\nFINAL(text.splitlines()[0])")])
    assert ask_question(ws, "q", model).answer == "6. Termination"


def test_a_final_written_after_code_in_the_same_reply_is_not_trusted(model: ScriptedProvider, ws: Workspace) -> None:
    fabricated = ("```python\nprint(grep('liquidation'))\n```\nREPL output:\ncontract.pdf p.3 l.1: made up\n\n"
                  "FINAL(The clause is on page 3 [contract.pdf p.3])")
    model.script(ROOT, [fabricated, code("FINAL('page 7 [contract.pdf p.7]')")])
    rec = Recorder()
    result = ask_question(ws, "q", model, rec)
    assert result.answer == "page 7 [contract.pdf p.7]"
    real = model.calls(ROOT)[1].messages[-1]["content"]
    assert real.startswith("REPL output:\ncontract.pdf p.7 l.9:") and "made up" not in real


def test_sequential_llm_query_gets_a_hint_to_batch(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("out = [llm_query(f'part {i}') for i in range(6)]\nprint(len(out))"), code("FINAL('ok')")])
    model.responder(SUB, lambda p: "x")
    rec = Recorder()
    ask_question(ws, "q", model, rec)
    shown = rec.of(ev.CellOutput)[0].shown
    assert shown.startswith("6\n") and "called llm_query 6 times one after another" in shown and "llm_batch" in shown


def test_printing_the_whole_context_says_how_much_was_cut(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("print(context * 3)"), code("FINAL('ok')")])
    rec = Recorder()
    ask_question(ws, "q", model, rec)
    shown = rec.of(ev.CellOutput)[0].shown
    assert "characters cut from the middle" in shown and "print slices, counts or summaries" in shown
    assert len(shown) < 10_600


def test_context_too_long_drops_old_outputs_and_tries_once_more(model: ScriptedProvider, ws: Workspace) -> None:
    too_long = ProviderError("This model's maximum context length is 128000 tokens", "context_length", 400)
    model.script(ROOT, [code("print(len(grep('fee')), 'first output')"), code("print('second output')"), too_long,
                        code("FINAL('done after trimming')")])
    rec = Recorder()
    result = ask_question(ws, "q", model, rec)
    assert result.answer == "done after trimming"
    retried = model.calls(ROOT)[3].messages
    assert [m["content"][:40] for m in retried if m["role"] == "user"][1:] == [
        "[output of an earlier cell removed: the ", "REPL output:\nsecond output\n"]
    assert [n.reason for n in rec.of(ev.Notice)] == ["context-trimmed"]


def test_look_sends_the_rendered_page_to_the_vision_model(model: ScriptedProvider, ws: Workspace) -> None:
    import base64

    model.script(ROOT, [code("print(look('contract.pdf', 4, 'What is the monthly fee?'))"),
                        code("FINAL('EUR 48,500 [contract.pdf p.4]')")])
    model.responder("vision", lambda prompt: "The page says the monthly fee is EUR 48,500.")
    rec = Recorder()
    result = ask_question(ws, "fee?", model, rec, vision_model="openai/vision")
    assert outputs(rec)[0] == "The page says the monthly fee is EUR 48,500.\n"
    sent = model.calls("vision")[0].messages[0]["content"]
    assert sent[0] == {"type": "text", "text": "What is the monthly fee?\n(This is contract.pdf, page 4.)"}
    url = sent[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    look = rec.of(ev.SubcallStarted)[0]
    assert look.call == "look" and look.model == "openai/vision"
    calls = [c for c in rec.of(ev.ModelCall) if c.model == "openai/vision"]
    assert calls and "[image: " in calls[0].prompt and "base64" not in calls[0].prompt  # the trace keeps no bytes
    assert result.usage["per_model"]["openai/vision"]["calls"] == 1


def test_look_without_a_vision_model_or_at_text_says_what_to_do(model: ScriptedProvider, ws: Workspace) -> None:
    model.script(ROOT, [code("try:\n    look('contract.pdf', 4)\nexcept Exception as e:\n    print(e)"),
                        code("try:\n    look('contract.docx', 1)\nexcept Exception as e:\n    print(e)"),
                        code("FINAL('ok [contract.pdf p.4]')")])
    rec = Recorder()
    ask_question(ws, "q", model, rec)  # openai/sub: not known to read images
    first, second = outputs(rec)[:2]
    assert "look() needs a model that reads images" in first and "--vision-model" in first
    model.script(ROOT, [code("try:\n    look('contract.docx', 1)\nexcept Exception as e:\n    print(e)"), code("FINAL('x [contract.pdf p.1]')")])
    rec = Recorder()
    ask_question(ws, "q", model, rec, vision_model="openai/vision")
    assert "contract.docx p.1 shows no image: read() its text instead" in outputs(rec)[0]
