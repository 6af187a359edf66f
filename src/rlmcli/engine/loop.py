"""The RLM loop: the root model writes code, the sandbox runs it, until FINAL.

The engine depends on interfaces only: a Gateway (over any provider), a sandbox factory, and one
observer for typed events. Sub-calls from model code arrive as sandbox requests; `_serve`
answers them through the shared Gateway (one budget, one concurrency bound, one cache);
`rlm_query` starts a child Engine one level deeper.

Real models' habits handled here: empty replies and replies without code (a nudge, then a
provider failure after three in a row), a FINAL before any code looked at the documents (one
nudge), FINAL text written after code in the same reply (never trusted: the code runs and its
real output goes back), sequential llm_query loops (a hint to use llm_batch), and a provider
refusing an over-long conversation (the oldest outputs are dropped and the call tried once more).
"""

from __future__ import annotations

import io
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from rlmcli.engine import events as ev
from rlmcli.engine.budget import Budget, BudgetExceeded, Limits
from rlmcli.engine.gateway import Gateway, ModelConfig, Origin
from rlmcli.engine.parse import code_blocks, textual_final
from rlmcli.engine.providers.base import ProviderError
from rlmcli.records import Limit, RunStatus, SubcallOutcome
from rlmcli.sandbox.interface import Repl, SandboxFactory
from rlmcli.workspace.reader import WorkspaceReader

NUDGE = ("Your reply had no ```python code block and no FINAL. Continue by writing code that "
         "explores the workspace, or finish with FINAL(\"answer\") inside a code block.")
EMPTY = "Your reply was empty. Write a ```python code block that explores the workspace, or call FINAL."
EARLY_FINAL = ("You called FINAL before any code looked at the documents, so the answer is unchecked. Look first: "
               "search(), grep() or read() the pages that support it, then call FINAL again, citing them "
               "like [doc p.N]. If you are sure without looking, call FINAL again.")
LAST_CALL = ("You have reached {limit}. Using only what you have found so far, give your best "
             "answer now, citing pages like [doc p.N]. Reply with the answer text only, no code.")
LAST_CALL_TOKENS = 1024  # the reply cap of that last call while a token or cost limit is set
SEQUENTIAL_HINT = ("Note: this cell called llm_query {n} times one after another. llm_batch(prompts) sends them "
                   "concurrently and is much faster: build the list of prompts, then one llm_batch call.")
TRIMMED = "[output of an earlier cell removed: the conversation exceeded the model's context window]"
DESCRIPTION_BUDGET = 4500  # characters (under ~1,800 tokens) of workspace description, however many docs
EMPTY_LIMIT = 3  # empty or code-less replies in a row before the run fails
SEQUENTIAL_LIMIT = 5  # llm_query calls in one cell before the llm_batch hint
MAX_BATCH = 2000  # prompts in one llm_batch
MAX_PROMPT_CHARS = 4_000_000  # characters in one sub-call prompt
LAST_CALL_SHAPED = ("You have reached {limit}. Using only what you have found so far, reply now with "
                    "the JSON answer only, in the format asked for with the question (no code, no prose).")


class FinalShape(Protocol):
    """What a FINAL answer must look like (schema.AnswerShape): told to the model with the
    question, checked on every FINAL; a rejected answer goes back with `check`'s message."""

    attempts: int  # rejected answers allowed before the run ends partial (limit "schema")

    @property
    def instructions(self) -> str: ...

    def check(self, answer: str) -> str | None: ...
MAX_CELLS_PER_REPLY = 8  # code blocks of one reply that run; the rest are not run (and the model is told)
MAX_RLM_DOCS = 100  # documents one rlm_query may name
MAX_NAME_CHARS = 1000  # characters of one document name in a request
MAX_RLM_TEXT_CHARS = 16_000_000  # characters of a text one rlm_query may hand over
CELLS_CUT = ("Only the first {n} code blocks of a reply run; the other {more} were not run. Put the work in fewer, "
             "larger blocks.")


def system_prompt() -> str:
    """The root model's instructions; the helper reference is the sandbox helpers' docstrings,
    written to prompts/helpers.txt (a test fails when the two differ), so the engine never
    imports the sandbox's code."""
    prompts = resources.files("rlmcli.engine").joinpath("prompts")
    template = prompts.joinpath("system.txt").read_text(encoding="utf-8")
    return template.replace("{helpers}", prompts.joinpath("helpers.txt").read_text(encoding="utf-8").rstrip("\n"))


def describe_workspace(reader: WorkspaceReader, focus: list[str] | None = None) -> str:
    """A bounded description: documents with pages and tokens, outlines while they fit."""
    docs = reader.records
    names = [d for d in docs if not focus or d in focus]
    totals = reader.totals()
    lines = [f"The workspace holds {totals['documents']:,} documents, {totals['pages']:,} pages, "
             f"{totals['tokens']:,} tokens."]
    if focus:
        lines.append(f"Focus on these documents: {', '.join(names)}.")
    used = len(lines[0])
    shown = 0
    for doc in names:
        rec = docs[doc]
        warn = f"; warnings: {'; '.join(rec.warnings)}" if rec.warnings else ""
        ocr = f", {len(rec.ocr_pages)} pages by OCR" if rec.ocr_pages else ""
        line = f"- {doc} ({rec.type}, {rec.pages} pages{ocr}, {rec.tokens:,} tokens{warn})"
        if used + len(line) > DESCRIPTION_BUDGET:
            break
        lines.append(line)
        used += len(line)
        shown += 1
    if shown < len(names):
        lines.append(f"... and {len(names) - shown:,} more documents: use ls('docs') or json.load(open('manifest.json')).")
    outline_room = DESCRIPTION_BUDGET - used
    for doc in names[:shown]:
        text = reader.outline(doc)
        if text is None or len(text) > min(1500, outline_room):
            continue
        lines.append(f"\nOutline of {doc}:\n{text.rstrip()}")
        outline_room -= len(text)
    return "\n".join(lines)


@dataclass
class RunResult:
    answer: str
    status: RunStatus
    limit: Limit | None = None  # what stopped a partial run
    error: str | None = None
    error_kind: str | None = None  # the provider error's kind when status is failed
    iterations: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    sandbox_layers: list[str] = field(default_factory=list)
    # filled in by run_question (rlmcli.ask): where the run is recorded and what it cites
    run_id: str = ""
    trace: str = ""
    workspace: str = ""
    citations: list[Any] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    # structured answers (--schema) and follow-ups (-c, chat)
    data: Any = None  # the validated object (or, partial, what of it was valid)
    schema_errors: list[str] = field(default_factory=list)
    follows: str | None = None  # the run this one continues


class Engine:
    """One RLM run over a workspace. Child engines (rlm_query) share the gateway and budget."""

    def __init__(self, root: Path, config: ModelConfig, sandbox_factory: SandboxFactory,
                 limits: Limits | None = None, observer: ev.Observer | None = None, *,
                 gateway: Gateway | None = None, sandbox: Repl | None = None, depth: int = 0,
                 focus: list[str] | None = None, stream: bool = False, run_id: str = "",
                 parent_id: int | None = None, shape: FinalShape | None = None, context: str = "",
                 follows: str | None = None) -> None:
        self.root = Path(root)
        self.reader = WorkspaceReader(self.root)
        self.config = config
        self.sandbox_factory = sandbox_factory
        self.sandbox = sandbox  # a started sandbox to reuse (reset first, left open); None: a new one
        self.limits = limits or Limits()
        self.observer = observer or (lambda e: None)
        self.depth = depth
        self.focus = focus
        self.stream = stream  # stream the root model's text (for a live view)
        self.origin = Origin(run_id, parent_id, depth)
        self.gateway = gateway or Gateway(config, Budget(self.limits), self.observer)
        self.budget = self.gateway.budget
        self.shape = shape  # the answer's required form (root run only)
        self.context = context  # earlier questions and answers, for a follow-up
        self.follows = follows
        self.cancelled = threading.Event()
        self._iteration = 0
        self._queries_this_cell = 0
        self._delegated = False
        self._lock = threading.Lock()

    def emit(self, event: ev.Event) -> None:
        event.run_id, event.parent_id, event.depth = self.origin.run_id, self.origin.parent_id, self.depth
        self.observer(event)

    # ---- sub-calls from model code --------------------------------------------------------------
    def serve(self, kind: str, payload: dict[str, Any]) -> Any:
        """Answer a request from model code (llm_query, llm_batch, rlm_query, look): a sandbox's
        `on_request`. The MCP server's repl sessions use it without running the loop."""
        return self._serve(kind, payload)

    def _serve(self, kind: str, payload: dict[str, Any]) -> Any:
        call_id = self.gateway.new_call_id()
        if kind == "look":
            return self._look(payload, call_id)
        model = self.gateway.allowed(payload.get("model"))  # PermissionError: the cell gets it
        self._delegated = True  # work handed to sub-calls counts as looking
        if kind == "llm_query":
            prompt = str(payload.get("prompt", ""))
            with self._lock:
                self._queries_this_cell += 1
            self.emit(ev.SubcallStarted(call_id=call_id, call=kind, model=model, size=len(prompt)))
            return self._finished(call_id, kind, self._plain(prompt, model, call_id))
        if kind == "llm_batch":
            given = payload.get("prompts", [])
            if not isinstance(given, list):  # a string would become one prompt per character
                raise TypeError("llm_batch takes a list of prompts")
            if len(given) > MAX_BATCH:
                raise ValueError(f"llm_batch takes at most {MAX_BATCH:,} prompts, not {len(given):,}: "
                                 "split the work, or combine small pieces into fewer prompts")
            return self._batch([str(p) for p in given], model, call_id)
        if kind == "rlm_query":
            question = str(payload.get("question", ""))
            target = self._rlm_target(payload.get("target"))
            size = len(target) if isinstance(target, str) else sum(len(d) for d in target)
            self.emit(ev.SubcallStarted(call_id=call_id, call=kind, model=model, size=size))
            return self._finished(call_id, kind, self._recurse(question, target, model, call_id))
        raise ValueError(f"unknown request {kind!r}")

    def _finished(self, call_id: int, call: str, outcome: SubcallOutcome) -> str:
        """Record a single sub-call's outcome; what model code gets back is its text."""
        text = outcome.for_model()
        self.emit(ev.SubcallFinished(call_id=call_id, call=call, ok=outcome.ok, done=1, total=1,
                                     error=None if outcome.ok else text))
        return text

    def _look(self, payload: dict[str, Any], call_id: int) -> str:
        """A picture of a page, described by the vision model (one model call, budgeted and cached)."""
        from rlmcli.workspace.render import page_images

        model = self.gateway.vision_model()
        doc = self.reader.resolve(str(payload.get("doc", "")))
        page = payload.get("page")
        if isinstance(page, bool) or not isinstance(page, int):
            raise TypeError("look(doc, page, question): page is a page number")
        question = str(payload.get("question") or "Describe this page: its figures, charts and tables, with their numbers.")
        self._delegated = True
        images = page_images(self.reader, doc, page)
        content: list[dict[str, Any]] = [{"type": "text", "text": f"{question}\n(This is {doc}, page {page}.)"}]
        for mime, data in images:
            import base64

            url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            content.append({"type": "image_url", "image_url": {"url": url}})
        self.emit(ev.SubcallStarted(call_id=call_id, call="look", model=model, size=sum(len(d) for _, d in images)))
        return self._finished(call_id, "look", self._complete([{"role": "user", "content": content}], model, call_id))

    def _batch(self, prompts: list[str], model: str, call_id: int) -> list[str]:
        self.emit(ev.SubcallStarted(call_id=call_id, call="llm_batch", model=model, size=len(prompts)))
        done = [0]

        def one(prompt: str) -> SubcallOutcome:
            if self.cancelled.is_set():
                return SubcallOutcome.failure("interrupted")
            answer = self._plain(prompt, model, call_id)
            with self._lock:
                done[0] += 1
                self.emit(ev.SubcallProgress(call_id=call_id, call="llm_batch", done=done[0], total=len(prompts)))
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
        failed = sum(not a.ok for a in answers)
        self.emit(ev.SubcallFinished(call_id=call_id, call="llm_batch", ok=failed == 0, failed=failed, done=done[0],
                                     total=len(prompts)))
        return [a.for_model() for a in answers]

    def _plain(self, prompt: str, model: str, call_id: int | None = None) -> SubcallOutcome:
        if len(prompt) > MAX_PROMPT_CHARS:
            return SubcallOutcome.failure(f"this prompt is {len(prompt):,} characters; the limit is "
                                          f"{MAX_PROMPT_CHARS:,}. Split the text into pieces (llm_batch over chunks).")
        problem = self.gateway.check_prompt(prompt, model)
        if problem:
            return SubcallOutcome.failure(problem)
        return self._complete([{"role": "user", "content": prompt}], model, call_id)

    def _complete(self, messages: list[dict[str, Any]], model: str, call_id: int | None) -> SubcallOutcome:
        """One sub-model call, one level deeper; a budget or provider failure is its outcome, not raised."""
        sub = Origin(self.origin.run_id, self.origin.parent_id, self.depth + 1)
        try:
            return SubcallOutcome(self.gateway.complete(messages, model, sub, call_id=call_id))
        except BudgetExceeded as exc:
            return SubcallOutcome.failure(f"{exc}; stop making calls and answer with FINAL from what you have.")
        except ProviderError as exc:
            return SubcallOutcome.failure(f"the model call failed: {exc}")

    def _rlm_target(self, target: Any) -> str | list[str]:
        """What rlm_query is over, bounded before any work: a text of at most MAX_RLM_TEXT_CHARS,
        or at most MAX_RLM_DOCS document names (resolved, each named once)."""
        if isinstance(target, str):
            if len(target) > MAX_RLM_TEXT_CHARS:
                raise ValueError(f"rlm_query takes a text of at most {MAX_RLM_TEXT_CHARS:,} characters, not "
                                 f"{len(target):,}: pass document names instead")
            return target
        if not isinstance(target, list) or not all(isinstance(d, str) for d in target):
            raise TypeError("rlm_query(question, text_or_docs): a text or a list of document names")
        if len(target) > MAX_RLM_DOCS:
            raise ValueError(f"rlm_query takes at most {MAX_RLM_DOCS} documents, not {len(target):,}: split the "
                             "question, or use llm_batch over the pieces you need")
        if any(len(d) > MAX_NAME_CHARS for d in target):
            raise ValueError(f"rlm_query: a document name longer than {MAX_NAME_CHARS:,} characters")
        return list(dict.fromkeys(self.reader.resolve(d) for d in target))

    def _recurse(self, question: str, target: str | list[str], model: str, call_id: int) -> SubcallOutcome:
        if self.depth + 1 >= self.limits.max_depth:
            if isinstance(target, str):
                if len(question) + len(target) > MAX_PROMPT_CHARS:  # known before joining them
                    return SubcallOutcome.failure(
                        f"this prompt is {len(question) + len(target):,} characters; the limit is "
                        f"{MAX_PROMPT_CHARS:,}. Split the text into pieces (llm_batch over chunks).")
                context = target
            else:
                size = self._docs_size(target)
                if size > MAX_PROMPT_CHARS:
                    return SubcallOutcome.failure(
                        f"rlm_query: those documents hold {size:,} characters, more than one sub-call takes "
                        f"({MAX_PROMPT_CHARS:,}). Name fewer documents, or grep()/search() for the pages you "
                        "need and llm_batch over them.")
                context = "\n\n".join(self._doc_text(d) for d in target)
            return self._plain(f"{question}\n\n---\n{context}", model, call_id)
        if isinstance(target, str):  # a text: a temporary workspace of its own, removed afterwards
            from rlmcli.workspace.ingest import ingest

            with tempfile.TemporaryDirectory(prefix="rlm-sub-") as tmp:
                # read as the text it is, whatever it looks like: model-chosen bytes never reach
                # a PDF or office parser in this process
                child_ws, _ = ingest(["-"], Path(tmp) / "ws", stdin=io.BytesIO(target.encode("utf-8", "replace")),
                                     as_text=True)
                result = self._child(child_ws.root, None, call_id).run(question)
        else:
            result = self._child(self.root, target, call_id).run(question)
        if result.status is RunStatus.FAILED:
            return SubcallOutcome.failure(f"the recursive run failed: {result.error}")
        return SubcallOutcome(result.answer)

    def _docs_size(self, docs: list[str]) -> int:
        """Characters `_doc_text` would join, from the manifest (nothing is read)."""
        total = 0
        for doc in docs:
            rec = self.reader.records[doc]
            total += rec.chars + rec.pages * (len(doc) + 16)
        return total

    def _child(self, root: Path, focus: list[str] | None, call_id: int) -> Engine:
        """A run one level deeper, sharing this run's gateway: one budget, one request bound."""
        return Engine(root, self.config, self.sandbox_factory, self.limits, self.observer, gateway=self.gateway,
                      depth=self.depth + 1, focus=focus, run_id=f"{self.origin.run_id}/{call_id}",
                      parent_id=call_id)

    def _doc_text(self, doc_id: str) -> str:
        pages = self.reader.pages(doc_id)
        return "\n".join(f"[{doc_id} p.{n}]\n{self.reader.read_page(doc_id, n)}" for n in range(1, pages + 1))

    # ---- the loop -------------------------------------------------------------------------------
    def run(self, question: str) -> RunResult:
        started = time.monotonic()
        model = self.config.model if self.depth == 0 else self.gateway.sub_model
        result = RunResult(answer="", status=RunStatus.FAILED)
        owned = self.sandbox is None
        sandbox = self.sandbox if self.sandbox is not None else self.sandbox_factory(self.root)
        if not owned:
            sandbox.reset()
        sandbox.on_request = self._serve
        try:
            result.sandbox_layers = list(sandbox.layers)
            self.emit(ev.RunStarted(question=question, model=model, sub_model=self.gateway.sub_model,
                                    workspace=str(self.root), sandbox=list(sandbox.layers), limits=vars(self.limits),
                                    follows=self.follows))
            first = f"Question: {question}\n\n{describe_workspace(self.reader, self.focus)}"
            for extra in (self.context, self.shape.instructions if self.shape else ""):
                if extra:
                    first += f"\n\n{extra}"
            messages = [{"role": "system", "content": system_prompt()}, {"role": "user", "content": first}]
            try:
                self._loop(sandbox, messages, model, result)
            except BudgetExceeded as exc:
                result.status, result.limit = RunStatus.PARTIAL, exc.limit
                result.answer = result.answer or self._best_effort(messages, exc.limit, result.iterations)
            except ProviderError as exc:
                result.status, result.error, result.error_kind = RunStatus.FAILED, str(exc), exc.kind
            except KeyboardInterrupt:
                if self.depth > 0:
                    raise  # the root run owns the interrupt
                self.cancelled.set()
                result.status, result.limit = RunStatus.PARTIAL, Limit.INTERRUPTED
                result.answer = result.answer or self._last_prose(messages) or no_answer(Limit.INTERRUPTED,
                                                                                         result.iterations)
        finally:
            if owned:
                sandbox.close()
            else:  # a borrowed sandbox goes back with a fresh process already booting for the next run
                try:
                    sandbox.reset()
                except OSError:
                    pass  # the next run's reset tries again
        result.seconds = time.monotonic() - started
        if self.depth == 0:
            from rlmcli.engine.providers import catalog

            known = all(catalog.priced(m) for m in (model, self.gateway.sub_model))
            result.usage = self.budget.usage(int(self.reader.totals().get("tokens", 0)), price_known=known)
        self.emit(ev.FinalAnswer(answer=result.answer, status=result.status, limit=result.limit))
        self.emit(ev.RunFinished(status=result.status, limit=result.limit, error=result.error,
                                 iterations=result.iterations, seconds=round(result.seconds, 3), usage=result.usage))
        return result

    def _ask_model(self, messages: list[dict[str, Any]], model: str, iteration: int) -> str:
        stream = None
        if self.stream:
            def stream(text: str, reset: bool) -> None:
                self.emit(ev.ModelDelta(iteration=iteration, text=text, reset=reset))
        try:
            return self.gateway.complete(messages, model, self.origin, on_delta=stream)
        except ProviderError as exc:
            if exc.kind != "context_length" or not _trim_outputs(messages):
                raise
            self.emit(ev.Notice(iteration=iteration, reason="context-trimmed",
                                text="the conversation exceeded the model's window: older outputs were removed"))
            return self.gateway.complete(messages, model, self.origin, on_delta=stream)

    def _loop(self, sandbox: Repl, messages: list[dict[str, Any]], model: str, result: RunResult) -> None:
        idle = 0  # empty or code-less replies in a row
        looked = False  # has any cell read the workspace?
        nudged_final = False
        rejected = 0  # answers the shape check sent back
        for iteration in range(1, self.limits.max_iterations + 1):
            self._iteration = iteration
            self.emit(ev.IterationStarted(iteration=iteration))
            reply = self._ask_model(messages, model, iteration)
            result.iterations = iteration  # counted once the model has replied
            self.emit(ev.ModelText(iteration=iteration, text=reply))
            messages.append({"role": "assistant", "content": reply})
            blocks = code_blocks(reply)
            final: str | None = None
            if not blocks:
                textual = textual_final(reply)
                if textual is None:
                    idle += 1
                    if idle >= EMPTY_LIMIT:
                        what = "empty replies" if not reply.strip() else "replies with neither code nor FINAL"
                        raise ProviderError(f"the model returned {EMPTY_LIMIT} {what} in a row", "empty")
                    self._notice(messages, iteration, "empty-reply" if not reply.strip() else "no-code",
                                 EMPTY if not reply.strip() else NUDGE)
                    continue
                kind, value = textual
                if kind == "var":
                    out = sandbox.run(f"FINAL_VAR({value!r})", timeout=self._cell_time(), wall=self.budget.deadline())
                    if out.final is None:
                        messages.append({"role": "user", "content": out.for_model(sandbox.max_output)})
                        continue
                    final = out.final
                else:
                    final = value
            else:
                idle = 0
                final, shown, looked_now = self._run_blocks(sandbox, blocks, iteration)
                looked = looked or looked_now
                if final is None:
                    self.budget.check()  # a sub-call may have used the budget up
                    messages.append({"role": "user", "content": "REPL output:\n" + "\n\n".join(shown)})
                    continue
            if not (looked or self._delegated) and not nudged_final:
                nudged_final = True
                self._notice(messages, iteration, "early-final", EARLY_FINAL)
                continue
            problem = self.shape.check(final) if self.shape is not None else None
            if problem is not None:
                assert self.shape is not None
                rejected += 1
                if rejected > self.shape.attempts:
                    result.answer, result.status, result.limit = final, RunStatus.PARTIAL, Limit.SCHEMA
                    return
                self._notice(messages, iteration, "schema", problem)
                continue
            result.answer, result.status = final, RunStatus.ANSWERED
            return
        self.budget.hit(Limit.MAX_ITERATIONS)
        result.limit, result.status = Limit.MAX_ITERATIONS, RunStatus.PARTIAL
        result.answer = self._best_effort(messages, Limit.MAX_ITERATIONS, result.iterations)

    def _run_blocks(self, sandbox: Repl, blocks: list[str], iteration: int) -> tuple[str | None, list[str], bool]:
        """Run a reply's code blocks in order (at most MAX_CELLS_PER_REPLY), stopping at an error:
        (final, outputs shown, looked)."""
        shown: list[str] = []
        looked = False
        if len(blocks) > MAX_CELLS_PER_REPLY:
            cut = CELLS_CUT.format(n=MAX_CELLS_PER_REPLY, more=len(blocks) - MAX_CELLS_PER_REPLY)
            self.emit(ev.Notice(iteration=iteration, reason="cells-cut", text=cut))
            blocks = blocks[:MAX_CELLS_PER_REPLY]
            shown.append(cut)
        for index, code in enumerate(blocks, start=1):
            self.emit(ev.CodeCell(iteration=iteration, index=index, code=code))
            with self._lock:
                self._queries_this_cell = 0
            out = sandbox.run(code, timeout=self._cell_time(), wall=self.budget.deadline())
            looked = looked or out.looked
            visible = out.for_model(sandbox.max_output)
            if self._queries_this_cell >= SEQUENTIAL_LIMIT:
                visible += "\n" + SEQUENTIAL_HINT.format(n=self._queries_this_cell)
            self.emit(ev.CellOutput(iteration=iteration, index=index, output=out.full_output(), shown=visible,
                                    error=out.error, duration=round(out.duration, 4), changed=out.changed,
                                    restarted=out.restarted))
            if out.timed_out:
                self.budget.check()  # the cell was cut by the run's time budget, not its own limit
            if out.final is not None:
                return out.final, shown, looked
            shown.append(f"[cell {index} output]\n{visible}" if len(blocks) > 1 else visible)
            if out.error and index < len(blocks):
                shown.append(f"(the remaining {len(blocks) - index} block(s) were not run after this error)")
                break
        return None, shown, looked

    def _cell_time(self) -> float | None:
        """A cell may run only as long as the run's time budget has left."""
        left = self.budget.remaining_time()
        if left is not None and left <= 0:
            self.budget.check()
        return left

    def _notice(self, messages: list[dict[str, Any]], iteration: int, reason: str, text: str) -> None:
        self.emit(ev.Notice(iteration=iteration, reason=reason, text=text))
        messages.append({"role": "user", "content": text})

    def _best_effort(self, messages: list[dict[str, Any]], limit: Limit, iterations: int) -> str:
        """A partial answer in words, never code: one short last call for the best answer when the
        budget still has room for it, else the model's last prose, else a line saying there is none."""
        try:  # refused at once when the budget left cannot pay for the call
            model = self.config.model if self.depth == 0 else self.gateway.sub_model
            what = "the iteration limit" if limit is Limit.MAX_ITERATIONS else f"this run's {limit} budget"
            last = LAST_CALL_SHAPED.format(limit=what) if self.shape is not None else LAST_CALL.format(limit=what)
            reply = self.gateway.complete(messages + [{"role": "user", "content": last}], model,
                                          self.origin, reply_cap=LAST_CALL_TOKENS)
            # a shaped answer is JSON, often in a ```json fence, which the schema reader takes apart
            text = reply.strip() if self.shape is not None else answer_text(reply)
            if text:
                return text
        except (BudgetExceeded, ProviderError):
            pass
        return self._last_prose(messages) or no_answer(limit, iterations)

    @staticmethod
    def _last_prose(messages: list[dict[str, Any]]) -> str:
        """The model's latest words outside code (its best statement without another call)."""
        for message in reversed(messages):
            if message["role"] == "assistant" and isinstance(message["content"], str):
                text = answer_text(message["content"])
                if text:
                    return text
        return ""


def no_answer(limit: Limit, iterations: int) -> str:
    what = "the run was interrupted" if limit is Limit.INTERRUPTED else f"the {limit} budget was reached"
    return f"no answer: {what} after {iterations} iteration{'s' * (iterations != 1)}"


_LITERAL_FINAL = re.compile(r"""\bFINAL\(\s*(?:[rR]?)("{3}|'{3}|"|')(.+?)\1\s*\)""", re.S)


def answer_text(reply: str) -> str:
    """What a reply says as an answer: a textual FINAL, a FINAL("...") with a literal inside its
    code, else its words outside code blocks; "" when it is only code."""
    final = textual_final(reply)
    if final is not None and final[0] == "answer" and final[1].strip():
        return final[1].strip()
    literal = _LITERAL_FINAL.search(reply)
    if literal and literal.group(2).strip():
        return literal.group(2).strip()
    prose = re.sub(r"```.*?(```|$)", "", reply, flags=re.S)
    prose = "\n".join(line for line in prose.splitlines() if not line.lstrip().startswith(("FINAL(", "FINAL_VAR(")))
    return prose.strip()


def _trim_outputs(messages: list[dict[str, Any]]) -> bool:
    """Drop the older half of the REPL outputs (never the question or the last exchange)."""
    outputs = [i for i, m in enumerate(messages[2:-2], start=2)
               if m["role"] == "user" and m["content"] != TRIMMED]
    if not outputs:
        return False
    for i in outputs[: max(1, (len(outputs) + 1) // 2)]:
        messages[i] = {"role": "user", "content": TRIMMED}
    return True
