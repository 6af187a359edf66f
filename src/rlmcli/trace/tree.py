"""The run as a tree, built from typed events: shared by the live view, `rlm trace` and the HTML page.

    rlm · question · model
    ├── iteration 1
    │   ├── code (highlighted; folded when long)
    │   ├── output (trimmed)
    │   └── llm_batch → model  12/16
    │       └── (a child run, for rlm_query, one level deeper)
    └── FINAL · answer

Child runs hang under the exact sub-call that started them (events carry `parent_id`).
`render(max_lines=N)` folds finished iterations to one line each so a live view never grows
taller than the terminal; `render(max_lines=N, final=True)` is the tree printed once when a run
ends: whole when it fits (then exactly what `rlm trace` replays), else its oldest iterations
folded to one line each that says what they did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rlmcli.engine import events as ev

CODE_LINES = 12  # folded beyond this unless verbose
OUTPUT_LINES = 6


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


class TraceTree:
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

    # ---- rendering with Rich ------------------------------------------------------------------------
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

    def render(self, verbose: bool = False, now: float | None = None, max_lines: int | None = None,
               final: bool = False, width: int | None = None) -> Any:
        """The tree and its footer.

        Live (`max_lines`): finished iterations fold to one line each, then the oldest share one
        line, and the current one's long parts are cut shorter, so the frame fits the terminal.
        `final` (with `max_lines`): the tree printed once when a run ends: only the oldest
        iterations fold, one honest line each, and only as many as it takes to fit; a run that
        fits is printed exactly as `rlm trace` replays it. `width` lets the root line put the
        sandbox layers on a line of their own rather than wrap mid-list."""
        from rich.console import Group
        from rich.text import Text

        self._width = width
        if self.root is None:
            return Text("starting…", style="dim")
        fold: set[int] = set()
        hidden: list[Node] = []
        live = max_lines is not None and not verbose and not final
        if max_lines is not None and not verbose:
            nodes = self._iteration_nodes()
            for node in nodes[:-1] if live else nodes:
                if self._height(self.root, fold) + 1 <= max_lines:
                    break
                fold.add(id(node))
            # Still too tall with one line per old iteration: the oldest share one line.
            excess = self._height(self.root, fold) + 1 - max_lines
            if live and excess > 0:
                hidden = nodes[:-1][:excess + 1]
        tree = self._rich(self.root, None, verbose, fold, tight=live, hidden={id(n) for n in hidden})
        if len(hidden) > 1:
            tree.children.insert(0, type(tree)(Text(
                f"iterations {hidden[0].number}–{hidden[-1].number} · {self._totals(hidden)} · folded "
                "(listed when the run ends)", style="dim"), guide_style="dim"))
        return Group(tree, Text(self.footer_text(now), style="bold"))

    @staticmethod
    def _totals(nodes: list[Node]) -> str:
        cells = sum(1 for n in nodes for c in n.children if c.kind == "code")
        errors = sum(1 for n in nodes for c in n.children if (c.kind == "output" and c.error) or c.kind == "error")
        parts = [_plural(cells, "cell", "cells")] + ([_plural(errors, "error", "errors")] if errors else [])
        return " · ".join(parts)

    def _iteration_nodes(self) -> list[Node]:
        return [c for c in self.root.children if c.kind == "iteration"] if self.root else []

    def _height(self, node: Node, fold: set[int]) -> int:
        """Lines a node takes when rendered (an estimate good enough to fold by)."""
        if id(node) in fold:
            return 1
        own = 1
        if node.kind == "model_call":
            return 0
        if node.kind == "code":
            own = min(node.text.count("\n") + 1, CODE_LINES + 1)
        elif node.kind in ("output", "streaming"):
            own = min(node.text.count("\n") + 1, OUTPUT_LINES + 1)
        elif node.kind == "text":
            own = min(node.text.count("\n") + 1, 3)
        return own + sum(self._height(c, fold) for c in node.children)

    def _label(self, node: Node, verbose: bool, tight: bool) -> Any:
        from rich.syntax import Syntax
        from rich.text import Text

        code_lines, output_lines = (4, 3) if tight else (CODE_LINES, OUTPUT_LINES)
        if node.kind == "run":
            label = Text.assemble(("rlm" if node.depth == 0 else "rlm_query run", "bold cyan"), " · ",
                                  (_clip(node.question, 80), "bold"), " · ", (node.model, "magenta"))
            if node.depth == 0 and node.sandbox:
                layers = f"sandbox: {', '.join(node.sandbox)}"
                # On one line when it fits, else on a line of its own (not wrapped mid-list).
                apart = self._width is not None and label.cell_len + 2 + len(layers) > self._width
                label.append(("\n" if apart else "  ") + layers, style="dim")
            return label
        if node.kind == "iteration":
            return Text(f"iteration {node.number}", style="bold")
        if node.kind == "streaming":
            return _streaming(node.text, output_lines)
        if node.kind == "text":
            return Text(_fold(node.text, 2, verbose), style="italic")
        if node.kind == "code":
            return Syntax(_fold(node.text.rstrip(), code_lines, verbose), "python", theme="ansi_dark",
                          background_color="default", word_wrap=True)
        if node.kind == "output":
            body = node.text.rstrip() or "(no output)"
            return Text(_fold(body, output_lines, verbose), style="red" if node.error else "green")
        if node.kind == "notice":
            return Text(f"↩ rlm: {_clip(node.text, 160)}", style="yellow")
        if node.kind == "retry":
            return Text(f"↻ {node.text}", style="yellow")
        if node.kind == "error":
            return Text(f"✗ {_clip(node.text, 200)}", style="bold red")
        if node.kind == "subcall":
            mark = "…" if node.ok is None else ("✓" if node.ok else "✗")
            count = f"  {node.done}/{node.total}" if node.call == "llm_batch" else ""
            failed = f" ({node.failed} failed)" if node.failed else ""
            retried = f" ↻{node.retries}" if node.retries else ""
            return Text.assemble((node.call, "yellow"), f" → {node.model}{count}{failed}{retried} {mark}")
        if node.kind == "model_call":
            return Text.assemble(("call", "dim"), f" {node.model} · {node.detail}\n", ("prompt: ", "dim"),
                                 _clip(node.text, 300), "\n", ("reply: ", "dim"), _clip(node.reply, 300))
        if node.kind == "sources":
            return Text("Sources (✓ quote found on the page · ○ cited, not checked · ✗ failed)", style="bold")
        if node.kind == "citation":
            style = {"verified": "green", "unchecked": "yellow"}.get(node.status, "red")
            return Text(node.text, style=style)
        if node.kind == "final" and node.status == "failed":
            return Text("✗ failed" + (f": {_clip(node.text, 200)}" if node.text else " (the error is above)"),
                        style="bold red")
        if node.kind == "final":
            style = "bold green" if node.status == "answered" else "bold yellow"
            extra = f" (partial: {node.limit})" if node.status == "partial" else ""
            return Text.assemble(("FINAL" + extra, style), " · ", _clip(node.text, 200))
        return Text(node.kind)

    def _summary(self, node: Node) -> Any:
        """One line for a folded iteration that says what it did: its first cell's first line,
        what that printed (or the error it raised), sub-calls, retries, nudges and time."""
        from rich.text import Text

        cells = [c for c in node.children if c.kind == "code"]
        outputs = [c for c in node.children if c.kind == "output"]
        parts: list[str] = []
        if cells:
            first = next((ln.strip() for ln in cells[0].text.splitlines() if ln.strip()), "")
            parts.append(_clip(first, 36) + (f" +{len(cells) - 1} cell{'s' * (len(cells) > 2)}" if len(cells) > 1 else ""))
        else:
            prose = next((c.text for c in node.children if c.kind == "text"), "")
            parts.append(f"no code: “{_clip(prose, 30)}”" if prose else "no code")
        failed = next((o for o in outputs if o.error), None)
        if failed is not None:
            last = next((ln.strip() for ln in reversed(failed.text.splitlines()) if ln.strip()), "error")
            parts[-1] += f" ✗ {_clip(last, 40)}"
        elif outputs:
            n = len(outputs[-1].text.rstrip().splitlines())
            parts[-1] += f" → {_plural(n, 'line', 'lines')}" if n else " → no output"
        subcalls = [c for c in node.children if c.kind == "subcall"]
        for s in subcalls[:2]:
            mark = "" if s.ok is None or s.ok else " ✗"
            parts.append((f"{s.call} {s.done}/{s.total}" if s.call == "llm_batch" else s.call) + mark)
        if len(subcalls) > 2:
            parts.append(f"+{len(subcalls) - 2} sub-calls")
        retries = sum(1 for c in node.children if c.kind == "retry") + sum(s.retries for s in subcalls)
        if retries:
            parts.append(f"↻ {_plural(retries, 'retry', 'retries')}")
        parts.extend(c.status for c in node.children if c.kind == "notice")
        parts.extend(f"✗ {_clip(c.text, 60)}" for c in node.children if c.kind == "error")
        seconds = sum(c.duration for c in outputs)
        return Text.assemble((f"iteration {node.number}", "bold"), (f" · {' · '.join(parts)} · {seconds:.1f}s", "dim"))

    def _rich(self, node: Node, parent: Any, verbose: bool, fold: set[int], tight: bool,
              hidden: frozenset[int] | set[int] = frozenset()) -> Any:
        from rich.tree import Tree

        if id(node) in fold:
            label, children = self._summary(node), []
        else:
            label, children = self._label(node, verbose, tight), node.children
        branch = Tree(label, guide_style="dim") if parent is None else parent.add(label)
        for child in children:
            if child.kind == "model_call" and not verbose:
                continue  # every request's prompt and reply: in -v, `rlm trace -v` and the HTML page
            if id(child) in hidden:
                continue  # shown as one "iterations a–b" line by render()
            self._rich(child, branch, verbose, fold, tight)
        return branch


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


def _streaming(text: str, lines: int) -> Any:
    """A reply as it streams in: its words in italics and its code highlighted, without the
    fences (the code becomes its cell when the reply ends), the last `lines` lines, a cursor."""
    from rich.syntax import Syntax
    from rich.text import Text

    parts: list[tuple[bool, list[str]]] = []  # (is code, lines)
    code = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            code = not code
            continue
        if not parts or parts[-1][0] != code:
            parts.append((code, []))
        parts[-1][1].append(line)
    kept: list[tuple[bool, list[str]]] = []
    left = lines
    for is_code, block in reversed(parts):
        while block and not block[-1].strip() and (is_code, block) != parts[-1]:
            block = block[:-1]  # blank lines before a fence
        if not block or left <= 0:
            continue
        kept.insert(0, (is_code, block[-left:]))
        left -= len(kept[0][1])
    if not kept:
        return Text("▌", style="dim")
    highlighter = Syntax("", "python", theme="ansi_dark", background_color="default")
    rendered = Text()
    for n, (is_code, block) in enumerate(kept):
        body = "\n".join(block)
        piece = highlighter.highlight(body) if is_code else Text(body, style="dim italic")
        piece.rstrip()
        rendered.append_text(piece)
        rendered.append("\n" if n < len(kept) - 1 else " ▌")
    return rendered


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


def _fold(text: str, lines: int, verbose: bool) -> str:
    parts = text.splitlines()
    if verbose or len(parts) <= lines:
        return text
    return "\n".join(parts[:lines]) + f"\n… {len(parts) - lines} more lines (-v shows all)"
