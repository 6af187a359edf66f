"""The RLM loop: the root model writes code, the sandbox runs it, until FINAL.

Sub-calls from model code arrive as sandbox requests; `_serve` answers them through the one
Gateway (budgets, concurrency, cache). `rlm_query` starts a child Engine one level deeper.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from rlmcli.engine import events as ev
from rlmcli.engine.budget import Budget, BudgetExceeded, Limits
from rlmcli.engine.events import Event
from rlmcli.engine.models import Gateway, ModelConfig, ProviderError
from rlmcli.engine.parse import code_blocks, textual_final
from rlmcli.workspace.store import Workspace

NUDGE = ("Your reply had no ```python code block and no FINAL. Continue by writing code that "
         "explores the workspace, or finish with FINAL(\"answer\") inside a code block.")
LAST_CALL = ("You have reached the iteration limit. Using only what you have found so far, give your best "
             "answer now, citing pages like [doc p.N]. Reply with the answer text only, no code.")
DESCRIPTION_BUDGET = 4500  # characters (under ~1,800 tokens) of workspace description, however many docs


def system_prompt() -> str:
    from rlmcli.sandbox.helpers import helper_reference

    template = resources.files("rlmcli.engine").joinpath("prompts/system.txt").read_text(encoding="utf-8")
    return template.replace("{helpers}", helper_reference())


def describe_workspace(ws: Workspace, focus: list[str] | None = None) -> str:
    """A bounded description: documents with pages and tokens, outlines while they fit."""
    manifest = ws.manifest()
    docs = manifest["documents"]
    names = [d for d in docs if not focus or d in focus]
    totals = manifest["totals"]
    lines = [f"The workspace holds {totals['documents']:,} documents, {totals['pages']:,} pages, "
             f"{totals['tokens']:,} tokens."]
    if focus:
        lines.append(f"Focus on these documents: {', '.join(names)}.")
    used = len(lines[0])
    shown = 0
    for doc in names:
        rec = docs[doc]
        warn = f"; warnings: {'; '.join(rec['warnings'])}" if rec["warnings"] else ""
        line = f"- {doc} ({rec['type']}, {rec['pages']} pages, {rec['tokens']:,} tokens{warn})"
        if used + len(line) > DESCRIPTION_BUDGET:
            break
        lines.append(line)
        used += len(line)
        shown += 1
    if shown < len(names):
        lines.append(f"... and {len(names) - shown:,} more documents: use ls('docs') or json.load(open('manifest.json')).")
    outline_room = DESCRIPTION_BUDGET - used
    for doc in names[:shown]:
        path = ws.doc_dir(doc) / "outline.txt"
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        if len(text) > min(1500, outline_room):
            continue
        lines.append(f"\nOutline of {doc}:\n{text.rstrip()}")
        outline_room -= len(text)
    return "\n".join(lines)


@dataclass
class RunResult:
    answer: str
    status: str  # answered | partial | failed
    limit: str | None = None  # the budget that stopped a partial run
    error: str | None = None
    iterations: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    sandbox_layers: list[str] = field(default_factory=list)


class Engine:
    """One RLM run over a workspace. Child engines (rlm_query) share the gateway and budget."""

    def __init__(self, ws: Workspace, config: ModelConfig, limits: Limits | None = None,
                 observer: Callable[[Event], None] | None = None, sandbox_level: str = "auto",
                 depth: int = 0, gateway: Gateway | None = None, cache_path: Path | None = None,
                 focus: list[str] | None = None, stream: bool = False, sandbox: Any = None) -> None:
        self.ws = ws
        self.stream = stream  # stream the root model's text (for a live view)
        self.sandbox = sandbox  # a started Sandbox to reuse (reset first, left open); None: a new one
        self.config = config
        self.limits = limits or Limits()
        self.observer = observer or (lambda e: None)
        self.sandbox_level = sandbox_level
        self.depth = depth
        self.focus = focus
        self.gateway = gateway or Gateway(config, Budget(self.limits), self._emit_raw, cache_path)
        self.budget = self.gateway.budget
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.cancelled = threading.Event()

    def _emit_raw(self, event: Event) -> None:
        self.observer(event)

    def emit(self, event_kind: str, /, **data: Any) -> None:
        self.observer(Event(event_kind, self.depth, data=data))

    # ---- sub-calls from model code ------------------------------------------------------------
    def _serve(self, kind: str, payload: dict[str, Any]) -> Any:
        call_id = next(self._ids)
        model = payload.get("model") or self.gateway.sub_model
        if kind == "llm_query":
            prompt = str(payload.get("prompt", ""))
            self.emit(ev.SUBCALL_STARTED, id=call_id, kind=kind, model=model, size=len(prompt))
            answer = self._plain(prompt, model)
            self.emit(ev.SUBCALL_FINISHED, id=call_id, kind=kind, ok=not answer.startswith("ERROR:"), done=1, total=1)
            return answer
        if kind == "llm_batch":
            prompts = [str(p) for p in payload.get("prompts", [])]
            self.emit(ev.SUBCALL_STARTED, id=call_id, kind=kind, model=model, size=len(prompts))
            done = [0]

            def one(prompt: str) -> str:
                if self.cancelled.is_set():
                    return "ERROR: interrupted"
                answer = self._plain(prompt, model)
                with self._lock:
                    done[0] += 1
                    self.emit(ev.SUBCALL_PROGRESS, id=call_id, kind=kind, done=done[0], total=len(prompts))
                return answer

            workers = max(1, min(self.limits.concurrency, len(prompts)))
            pool = ThreadPoolExecutor(max_workers=workers)
            try:  # order kept; a failure stays in its slot
                answers = list(pool.map(one, prompts))
            except BaseException:  # Ctrl-C: drop what has not started
                self.cancelled.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            failed = sum(a.startswith("ERROR:") for a in answers)
            self.emit(ev.SUBCALL_FINISHED, id=call_id, kind=kind, ok=failed == 0, failed=failed, done=done[0],
                      total=len(prompts))
            return answers
        if kind == "rlm_query":
            question = str(payload.get("question", ""))
            target = payload.get("target")
            self.emit(ev.SUBCALL_STARTED, id=call_id, kind=kind, model=model, size=len(str(target)))
            answer = self._recurse(question, target, model)
            self.emit(ev.SUBCALL_FINISHED, id=call_id, kind=kind, ok=not answer.startswith("ERROR:"), done=1, total=1)
            return answer
        raise ValueError(f"unknown request {kind!r}")

    def _plain(self, prompt: str, model: str) -> str:
        problem = self.gateway.check_prompt(prompt, model)
        if problem:
            return problem
        try:
            return self.gateway.complete([{"role": "user", "content": prompt}], model, self.depth + 1)
        except BudgetExceeded as exc:
            return f"ERROR: {exc}; stop making calls and answer with FINAL from what you have."
        except ProviderError as exc:
            return f"ERROR: the model call failed: {exc}"

    def _recurse(self, question: str, target: Any, model: str) -> str:
        if self.depth + 1 >= self.limits.max_depth:
            if isinstance(target, str):
                context = target
            else:
                context = "\n\n".join(self._doc_text(d) for d in (target or []))
            return self._plain(f"{question}\n\n---\n{context}", model)
        if isinstance(target, str):  # a text: a temporary workspace of its own, removed afterwards
            from rlmcli.workspace.ingest import ingest

            with tempfile.TemporaryDirectory(prefix="rlm-sub-") as tmp:
                child_ws, _ = ingest(["-"], Path(tmp) / "ws", stdin=io.BytesIO(target.encode("utf-8")))
                result = self._child(child_ws, None).run(question)
        else:
            result = self._child(self.ws, [str(d) for d in (target or [])]).run(question)
        if result.status == "failed":
            return f"ERROR: the recursive run failed: {result.error}"
        return result.answer

    def _child(self, ws: Workspace, focus: list[str] | None) -> Engine:
        """A run one level deeper, sharing this run's gateway: one budget, one request bound."""
        return Engine(ws, self.config, self.limits, self.observer, self.sandbox_level, self.depth + 1,
                      self.gateway, focus=focus)

    def _doc_text(self, doc: str) -> str:
        try:
            doc_id = self.ws.resolve_doc(doc)
        except Exception as exc:  # noqa: BLE001
            return f"(no document {doc}: {exc})"
        rec = self.ws.documents()[doc_id]
        return "\n".join(f"[{doc_id} p.{n}]\n{self.ws.read_page(doc_id, n)}" for n in range(1, rec["pages"] + 1))

    # ---- the loop -----------------------------------------------------------------------------
    def run(self, question: str) -> RunResult:
        from rlmcli.sandbox import Sandbox

        started = time.monotonic()
        model = self.config.model if self.depth == 0 else self.gateway.sub_model
        result = RunResult(answer="", status="failed")
        if self.sandbox is not None:
            self.sandbox.reset()
            self.sandbox.on_request = self._serve
            owned = contextlib.nullcontext(self.sandbox)
        else:
            owned = Sandbox(self.ws.root, level=self.sandbox_level, on_request=self._serve)
        with owned as sandbox:
            result.sandbox_layers = sandbox.layers
            self.emit(ev.RUN_STARTED, question=question, model=model, sub_model=self.gateway.sub_model,
                      workspace=str(self.ws.root), sandbox=sandbox.layers, limits=vars(self.limits))
            messages = [{"role": "system", "content": system_prompt()},
                        {"role": "user", "content": f"Question: {question}\n\n{describe_workspace(self.ws, self.focus)}"}]
            try:
                self._loop(sandbox, messages, model, result)
            except BudgetExceeded as exc:
                result.status, result.limit = "partial", exc.limit
                result.answer = result.answer or self._best_effort(messages)
            except ProviderError as exc:
                result.status, result.error = "failed", str(exc)
            except KeyboardInterrupt:
                if self.depth > 0:
                    raise  # the root run owns the interrupt
                self.cancelled.set()
                result.status, result.limit = "partial", "interrupted"
                result.answer = result.answer or self._last_text(messages)
        result.seconds = time.monotonic() - started
        result.usage = self.budget.usage(self.ws.manifest()["totals"]["tokens"]) if self.depth == 0 else {}
        self.emit(ev.FINAL_ANSWER, answer=result.answer, status=result.status, limit=result.limit)
        self.emit(ev.RUN_FINISHED, status=result.status, limit=result.limit, error=result.error,
                  iterations=result.iterations, seconds=round(result.seconds, 3), usage=result.usage)
        return result

    def _loop(self, sandbox: Any, messages: list[dict[str, Any]], model: str, result: RunResult) -> None:
        for iteration in range(1, self.limits.max_iterations + 1):
            result.iterations = iteration
            self.emit(ev.ITERATION_STARTED, iteration=iteration)
            stream = (lambda text, reset, it=iteration: self.emit(ev.MODEL_DELTA, iteration=it, text=text, reset=reset)) \
                if self.stream else None
            reply = self.gateway.complete(messages, model, self.depth, on_delta=stream)
            self.emit(ev.MODEL_TEXT, iteration=iteration, text=reply)
            messages.append({"role": "assistant", "content": reply})
            blocks = code_blocks(reply)
            if not blocks:
                final = textual_final(reply)
                if final is not None:
                    kind, value = final
                    if kind == "var":
                        out = sandbox.run(f"FINAL_VAR({value!r})")
                        if out.final is not None:
                            result.answer, result.status = out.final, "answered"
                            return
                        messages.append({"role": "user", "content": out.for_model(sandbox.limits.max_output)})
                        continue
                    result.answer, result.status = value, "answered"
                    return
                messages.append({"role": "user", "content": NUDGE})
                continue
            shown = []
            for index, code in enumerate(blocks, start=1):
                self.emit(ev.CODE_CELL, iteration=iteration, index=index, code=code)
                out = sandbox.run(code)
                visible = out.for_model(sandbox.limits.max_output)
                self.emit(ev.CELL_OUTPUT, iteration=iteration, index=index, output=out.full_output(), shown=visible,
                          error=out.error, duration=round(out.duration, 4), changed=out.changed,
                          restarted=out.restarted)
                if out.final is not None:
                    result.answer, result.status = out.final, "answered"
                    return
                shown.append(f"[cell {index} output]\n{visible}" if len(blocks) > 1 else visible)
                if out.error and index < len(blocks):
                    shown.append(f"(the remaining {len(blocks) - index} block(s) were not run after this error)")
                    break
            self.budget.check()  # a sub-call may have used the budget up
            messages.append({"role": "user", "content": "REPL output:\n" + "\n\n".join(shown)})
        self.budget.hit("max-iterations")
        result.limit, result.status = "max-iterations", "partial"
        result.answer = self._best_effort(messages)

    def _best_effort(self, messages: list[dict[str, Any]]) -> str:
        """One last call for the best answer from what was found; the last model text if that fails."""
        try:  # refused at once by the budget when the run stopped on calls, tokens, cost or time
            reply = self.gateway.complete(messages + [{"role": "user", "content": LAST_CALL}],
                                          self.config.model if self.depth == 0 else self.gateway.sub_model, self.depth)
            final = textual_final(reply)
            return final[1] if final and final[0] == "answer" else reply.strip()
        except (BudgetExceeded, ProviderError):
            pass
        return self._last_text(messages)

    @staticmethod
    def _last_text(messages: list[dict[str, Any]]) -> str:
        """The model's last words, without its code blocks (the best partial answer without a call)."""
        import re

        for message in reversed(messages):
            if message["role"] == "assistant" and message["content"].strip():
                prose = re.sub(r"```.*?(```|$)", "", message["content"], flags=re.S).strip()
                return prose or message["content"].strip()
        return ""
