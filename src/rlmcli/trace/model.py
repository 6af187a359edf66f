"""The run as a tree of nodes, built from typed events: shared by the live view, `rlm trace` and
the HTML page (trace/render.py draws it with Rich, trace/html.py as a page).

    rlm · question · model
    ├── iteration 1
    │   ├── code
    │   ├── output
    │   └── llm_batch → model  12/16
    │       └── (a child run, for rlm_query, one level deeper)
    └── FINAL · answer

Child runs hang under the exact sub-call that started them (events carry `parent_id`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rlmcli.engine import events as ev


@dataclass
class Node:
    """A node of the view: `kind` says which fields matter (run, iteration, text, streaming, code,
    output, notice, retry, error, subcall, final)."""

    kind: str
    text: str = ""
    error: bool = False
    duration: float = 0.0
    children: list[Node] = field(default_factory=list)
    # run
    question: str = ""
    model: str = ""
    sandbox: list[str] = field(default_factory=list)
    depth: int = 0
    # iteration
    number: int = 0
    # subcall
    call: str = ""
    done: int = 0
    total: int = 0
    ok: bool | None = None
    failed: int = 0
    retries: int = 0
    # final
    status: str = ""
    limit: str | None = None
    # model_call: text is the prompt
    reply: str = ""
    detail: str = ""

    def add(self, node: Node) -> Node:
        self.children.append(node)
        return node


class TreeModel:
    """Consumes events (an observer) and keeps the tree and the footer's counters."""

    def __init__(self) -> None:
        self.root: Node | None = None
        self.runs: dict[str, Node] = {}
        self.iterations: dict[str, Node] = {}  # run id -> its current iteration
        self.subcalls: dict[tuple[str, int], Node] = {}
        self.calls_by_id: dict[int, Node] = {}
        self.iteration_count = 0
        self.calls = 0
        self.cache_hits = 0
        self.retries = 0
        self.tokens = 0
        self.cost = 0.0
        self.cost_unknown = False
        self.started: float | None = None
        self.finished: float | None = None
        self.status: str | None = None
        self.error: str | None = None
        self.warnings: list[str] = []
        self._width: int | None = None

    def _place(self, e: ev.Event) -> Node | None:
        """Where a step of run `e.run_id` goes: its current iteration, else the run itself."""
        return self.iterations.get(e.run_id) or self.runs.get(e.run_id)

    def __call__(self, e: ev.Event) -> None:
        if self.started is None:
            self.started = e.time
        handler = self._handlers.get(type(e))
        if handler is not None:
            handler(e)

    @property
    def _handlers(self) -> dict[type[ev.Event], Any]:
        return {ev.RunStarted: self._run_started, ev.IterationStarted: self._iteration, ev.ModelDelta: self._delta,
                ev.ModelText: self._text, ev.CodeCell: self._code, ev.CellOutput: self._output,
                ev.Notice: self._notice, ev.SubcallStarted: self._subcall, ev.SubcallProgress: self._progress,
                ev.SubcallFinished: self._progress, ev.ModelRetry: self._retry, ev.ModelError: self._error,
                ev.ModelCall: self._call, ev.BudgetWarning: self._warning, ev.FinalAnswer: self._final,
                ev.RunFinished: self._finished, ev.Citations: self._citations}

    def _run_started(self, e: ev.RunStarted) -> None:
        node = Node("run", question=e.question, model=e.model, sandbox=list(e.sandbox), depth=e.depth)
        parent = self.calls_by_id.get(e.parent_id) if e.parent_id is not None else None
        if parent is not None:
            parent.add(node)
        elif self.root is None:
            self.root = node
        else:
            self.root.add(node)
        self.runs[e.run_id] = node

    def _iteration(self, e: ev.IterationStarted) -> None:
        run = self.runs.get(e.run_id)
        if run is not None:
            self.iterations[e.run_id] = run.add(Node("iteration", number=e.iteration))
        if e.depth == 0:
            self.iteration_count = e.iteration

    def _delta(self, e: ev.ModelDelta) -> None:
        it = self.iterations.get(e.run_id)
        if it is None:
            return
        if e.reset:  # a retry starts the reply over: what the failed attempt streamed goes
            _drop_streaming(it)
        if not e.text:
            return
        live = next((c for c in it.children if c.kind == "streaming"), None)
        if live is None:
            live = it.add(Node("streaming"))
        elif it.children[-1] is not live:  # a retry line came in between: the preview stays last
            it.children.remove(live)
            it.children.append(live)
        live.text += e.text

    def _text(self, e: ev.ModelText) -> None:
        it = self.iterations.get(e.run_id)
        if it is None:
            return
        _drop_streaming(it)  # the whole reply replaces the streamed preview: its prose here, its code as cells
        prose = _prose(e.text)
        if prose:
            it.add(Node("text", text=prose))  # what the model says around its code

    def _code(self, e: ev.CodeCell) -> None:
        it = self.iterations.get(e.run_id)
        if it is not None:
            it.add(Node("code", text=e.code))

    def _output(self, e: ev.CellOutput) -> None:
        it = self.iterations.get(e.run_id)
        if it is not None:
            it.add(Node("output", text=e.output, error=e.error, duration=e.duration))

    def _notice(self, e: ev.Notice) -> None:
        place = self._place(e)
        if place is not None:
            place.add(Node("notice", text=e.text, status=e.reason))

    def _subcall(self, e: ev.SubcallStarted) -> None:
        place = self._place(e)
        if place is not None:
            node = place.add(Node("subcall", call=e.call, model=e.model, total=e.size if e.call == "llm_batch" else 1))
            self.subcalls[(e.run_id, e.call_id)] = node
            self.calls_by_id[e.call_id] = node

    def _progress(self, e: ev.SubcallProgress | ev.SubcallFinished) -> None:
        node = self.subcalls.get((e.run_id, e.call_id))
        if node is not None:
            node.done, node.total = e.done, e.total or node.total
            if isinstance(e, ev.SubcallFinished):
                node.ok, node.failed = e.ok, e.failed

    def _retry(self, e: ev.ModelRetry) -> None:
        self.retries += 1
        text = f"retry {e.attempt}/{e.attempts} in {e.delay:.1f} s: {e.reason}"
        target = self.calls_by_id.get(e.call_id) if e.call_id is not None else None
        if target is not None:
            target.retries += 1
            return
        place = self._place(e)
        if place is not None:
            place.add(Node("retry", text=f"{e.model} · {text}"))

    def _error(self, e: ev.ModelError) -> None:
        place = self._place(e)
        if place is not None and e.call_id is None:  # a sub-call's failure shows as ✗ on its node
            place.add(Node("error", text=e.message, error=True))

    def _call(self, e: ev.ModelCall) -> None:
        place = self.calls_by_id.get(e.call_id) if e.call_id is not None else self._place(e)
        if place is not None:
            place.add(Node("model_call", text=e.prompt, reply=e.reply, model=e.model, detail=_call_detail(e)))
        self.calls += 1
        self.cache_hits += e.cache_hit
        self.tokens += e.prompt_tokens + e.completion_tokens
        if e.cost is None:
            self.cost_unknown = True
        else:
            self.cost += e.cost

    def _warning(self, e: ev.BudgetWarning) -> None:
        self.warnings.append(f"{e.limit} at {100 * e.used / e.max:.0f}%" if e.max else e.limit)

    def _final(self, e: ev.FinalAnswer) -> None:
        run = self.runs.get(e.run_id)
        if run is not None:
            run.add(Node("final", text=e.answer, status=e.status, limit=e.limit))

    def _citations(self, e: ev.Citations) -> None:
        run = self.runs.get(e.run_id)
        if run is not None and e.citations:
            sources = run.add(Node("sources"))
            for c in e.citations:
                sources.add(Node("citation", text=citation_label(c), status=str(c.get("status", ""))))

    def _finished(self, e: ev.RunFinished) -> None:
        run = self.runs.get(e.run_id)
        if e.error and run is not None and not _mentions(run, e.error):
            final = run.children[-1] if run.children and run.children[-1].kind == "final" else None
            if final is not None and e.status == "failed" and not final.text:
                final.text = e.error  # a failed run ends with why, not an empty FINAL
            else:
                run.add(Node("error", text=e.error))  # a failed run replays with why it failed
        if e.depth == 0:
            self.finished = e.time
            self.status = e.status
            self.error = e.error

    def footer_text(self, now: float | None = None) -> str:
        end = self.finished or now or time.time()
        elapsed = end - (self.started or end)
        from rlmcli.engine.budget import dollars

        if self.cost_unknown:
            cost = f"{dollars(self.cost)} + unpriced calls" if self.cost else "cost unknown"
        else:
            cost = dollars(self.cost)
        cached = f" ({self.cache_hits} cached)" if self.cache_hits else ""
        retried = f" · {_plural(self.retries, 'retry', 'retries')}" if self.retries else ""
        warn = f" · ⚠ {', '.join(self.warnings)}" if self.warnings else ""
        return (f"iterations {self.iteration_count} · calls {self.calls}{cached} · tokens {self.tokens:,} · {cost} · "
                f"{elapsed:.1f}s{retried}{warn}")


def _mentions(node: Node, error: str) -> bool:
    """Whether an error node under `node` already says `error` (a model error shown where it happened)."""
    return (node.kind == "error" and node.text == error) or any(_mentions(c, error) for c in node.children)


CITATION_MARKS = {"verified": "✓", "unchecked": "○"}  # anything else: ✗ (failed, and older traces' states)


def citation_label(c: dict[str, Any]) -> str:
    """One line for a checked citation (a Citations event's dict): mark, place, and what was checked."""
    status = str(c.get("status", ""))
    mark = CITATION_MARKS.get(status, "✗")
    place = str(c.get("text", ""))
    if status == "verified":
        return f"{mark} {place}: quote found: \"{c.get('quote')}\"" + (f" (l.{c['line']})" if c.get("line") else "")
    if status == "unchecked":
        return f"{mark} {place}: cited, not checked (no quotation)"
    quote = f": \"{c['quote']}\"" if c.get("quote") else ""
    return f"{mark} {place}: {c.get('note', '')}{quote}"
def _drop_streaming(it: Node) -> None:
    it.children[:] = [c for c in it.children if c.kind != "streaming"]


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _call_detail(e: ev.ModelCall) -> str:
    from rlmcli.engine.budget import dollars

    cost = dollars(e.cost, "unpriced")
    parts = [f"{e.prompt_tokens:,}+{e.completion_tokens:,} tokens", cost, f"{e.latency:.2f}s"]
    if e.cache_hit:
        parts.append("cached")
    if e.retries:
        parts.append(f"{e.retries} retr{'y' if e.retries == 1 else 'ies'}")
    return " · ".join(parts)


def _prose(text: str) -> str:
    """The model's words outside its code blocks."""
    import re

    return re.sub(r"```.*?(```|$)", "", text, flags=re.S).strip()


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
