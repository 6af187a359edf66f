"""The run as a tree, built from events: shared by the live view, `rlm trace` and the HTML page.

    rlm · question · model
    ├── iteration 1
    │   ├── code (highlighted; folded when long)
    │   ├── output (trimmed)
    │   └── llm_batch → model  12/16
    │       └── (a child run, for rlm_query, one level deeper)
    └── FINAL · answer
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rlmcli.engine import events as ev
from rlmcli.engine.events import Event

CODE_LINES = 12  # folded beyond this unless verbose
OUTPUT_LINES = 6


@dataclass
class Node:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)

    def add(self, node_kind: str, /, **data: Any) -> Node:
        node = Node(node_kind, data)
        self.children.append(node)
        return node


class TraceTree:
    """Consumes events (an observer) and keeps the tree and the footer's counters."""

    def __init__(self) -> None:
        self.root: Node | None = None
        self.runs: dict[int, Node] = {}
        self.iterations: dict[int, Node] = {}
        self.subcalls: dict[tuple[int, int], Node] = {}
        self.last_rlm_query: dict[int, Node] = {}
        self.iteration_count = 0
        self.calls = 0
        self.tokens = 0
        self.cost = 0.0
        self.cost_unknown = False
        self.started: float | None = None
        self.finished: float | None = None
        self.status: str | None = None
        self.warnings: list[str] = []

    def __call__(self, e: Event) -> None:
        d = e.data
        if self.started is None:
            self.started = e.time
        if e.kind == ev.RUN_STARTED:
            node = Node("run", {"question": d.get("question", ""), "model": d.get("model", ""),
                                "sandbox": d.get("sandbox", []), "depth": e.depth})
            parent = self.last_rlm_query.get(e.depth - 1)
            if e.depth == 0 or parent is None:
                self.root = self.root or node
                if self.root is not node:
                    self.root.children.append(node)
            else:
                parent.children.append(node)
            self.runs[e.depth] = node
        elif e.kind == ev.ITERATION_STARTED:
            run = self.runs.get(e.depth)
            if run is not None:
                self.iterations[e.depth] = run.add("iteration", n=d["iteration"])
            if e.depth == 0:
                self.iteration_count = d["iteration"]
        elif e.kind == ev.MODEL_DELTA:
            it = self.iterations.get(e.depth)
            if it is not None:
                live = it.children[-1] if it.children and it.children[-1].kind == "streaming" else it.add("streaming", text="")
                live.data["text"] = ("" if d.get("reset") else live.data["text"]) + d.get("text", "")
        elif e.kind == ev.MODEL_TEXT:
            it = self.iterations.get(e.depth)
            text = d.get("text", "")
            if it is not None:
                if it.children and it.children[-1].kind == "streaming":
                    it.children.pop()  # the whole reply replaces the streamed preview
                prose = _prose(text)
                if prose:
                    it.add("text", text=prose)  # what the model says around its code
        elif e.kind == ev.CODE_CELL:
            it = self.iterations.get(e.depth)
            if it is not None:
                it.add("code", code=d["code"])
        elif e.kind == ev.CELL_OUTPUT:
            it = self.iterations.get(e.depth)
            if it is not None:
                it.add("output", output=d.get("output", ""), error=d.get("error", False),
                       duration=d.get("duration", 0.0))
        elif e.kind == ev.SUBCALL_STARTED:
            it = self.iterations.get(e.depth) or self.runs.get(e.depth)
            if it is not None:
                node = it.add("subcall", kind=d["kind"], model=d.get("model", ""), size=d.get("size", 0),
                              done=0, total=d.get("size", 1) if d["kind"] == "llm_batch" else 1, ok=None)
                self.subcalls[(e.depth, d["id"])] = node
                if d["kind"] == "rlm_query":
                    self.last_rlm_query[e.depth] = node
        elif e.kind in (ev.SUBCALL_PROGRESS, ev.SUBCALL_FINISHED):
            node = self.subcalls.get((e.depth, d["id"]))
            if node is not None:
                node.data.update(done=d.get("done", 0), total=d.get("total", node.data["total"]))
                if e.kind == ev.SUBCALL_FINISHED:
                    node.data.update(ok=d.get("ok"), failed=d.get("failed", 0))
        elif e.kind == ev.MODEL_CALL:
            self.calls += 1
            self.tokens += d.get("prompt_tokens", 0) + d.get("completion_tokens", 0)
            if d.get("cost") is None:
                self.cost_unknown = True
            else:
                self.cost += d["cost"]
        elif e.kind == ev.BUDGET_WARNING:
            used, top = d.get("used", 0), d.get("max", 0)
            self.warnings.append(f"{d.get('limit')} at {100 * used / top:.0f}%" if top else str(d.get("limit")))
        elif e.kind == ev.FINAL_ANSWER:
            run = self.runs.get(e.depth)
            if run is not None:
                run.add("final", answer=d.get("answer", ""), status=d.get("status"), limit=d.get("limit"))
        elif e.kind == ev.RUN_FINISHED and e.depth == 0:
            self.finished = e.time
            self.status = d.get("status")

    # ---- rendering with Rich ------------------------------------------------------------------------
    def footer_text(self, now: float | None = None) -> str:
        end = self.finished or now or time.time()
        elapsed = end - (self.started or end)
        if self.cost_unknown:
            cost = f"${self.cost:.4f} + unpriced calls" if self.cost else "cost unknown"
        else:
            cost = f"${self.cost:.4f}"
        warn = f" · ⚠ {', '.join(self.warnings)}" if self.warnings else ""
        return (f"iterations {self.iteration_count} · calls {self.calls} · tokens {self.tokens:,} · {cost} · "
                f"{elapsed:.1f}s{warn}")

    def render(self, verbose: bool = False, now: float | None = None) -> Any:
        from rich.console import Group
        from rich.text import Text

        if self.root is None:
            return Text("starting…", style="dim")
        tree = self._rich(self.root, None, verbose)
        return Group(tree, Text(self.footer_text(now), style="bold"))

    def _rich(self, node: Node, parent: Any, verbose: bool) -> Any:
        from rich.syntax import Syntax
        from rich.text import Text
        from rich.tree import Tree

        d = node.data
        label: Any
        if node.kind == "run":
            label = Text.assemble(("rlm" if d["depth"] == 0 else "rlm_query run", "bold cyan"), " · ",
                                  (_clip(d["question"], 80), "bold"), " · ", (d["model"], "magenta"),
                                  (f"  sandbox: {', '.join(d['sandbox'])}" if d["depth"] == 0 and d["sandbox"] else "", "dim"))
        elif node.kind == "iteration":
            label = Text(f"iteration {d['n']}", style="bold")
        elif node.kind == "streaming":
            tail = d["text"].splitlines()[-OUTPUT_LINES:]
            label = Text("\n".join(tail) + " ▌", style="dim italic")
        elif node.kind == "text":
            label = Text(_fold(d["text"], 2, verbose), style="italic")
        elif node.kind == "code":
            label = Syntax(_fold(d["code"].rstrip(), CODE_LINES, verbose), "python", theme="ansi_dark",
                           background_color="default", word_wrap=True)
        elif node.kind == "output":
            body = d["output"].rstrip() or "(no output)"
            label = Text(_fold(body, OUTPUT_LINES, verbose), style="red" if d["error"] else "green")
        elif node.kind == "subcall":
            mark = "…" if d["ok"] is None else ("✓" if d["ok"] else "✗")
            count = f"  {d['done']}/{d['total']}" if d["kind"] == "llm_batch" else ""
            failed = f" ({d.get('failed')} failed)" if d.get("failed") else ""
            label = Text.assemble((f"{d['kind']}", "yellow"), f" → {d['model']}{count}{failed} {mark}")
        elif node.kind == "final":
            style = "bold green" if d["status"] == "answered" else "bold yellow"
            extra = f" (partial: {d['limit']})" if d["status"] == "partial" else ""
            label = Text.assemble(("FINAL" + extra, style), " · ", _clip(d["answer"], 200))
        else:
            label = Text(node.kind)
        branch = Tree(label, guide_style="dim") if parent is None else parent.add(label)
        for child in node.children:
            self._rich(child, branch, verbose)
        return branch


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
