"""The run tree drawn with Rich, for the live view and `rlm trace`.

`render(max_lines=N)` folds finished iterations to one line each so a live view never grows
taller than the terminal; `render(max_lines=N, final=True)` is the tree printed once when a run
ends: whole when it fits (then exactly what `rlm trace` replays), else its oldest iterations
folded to one line each that says what they did.
"""

from __future__ import annotations

from typing import Any

from rlmcli.trace.model import Node, TreeModel, _clip, _plural

CODE_LINES = 12  # folded beyond this unless verbose
OUTPUT_LINES = 6


class TraceTree(TreeModel):
    """The tree model with its Rich rendering: feed it events, then `render()`."""

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


def _fold(text: str, lines: int, verbose: bool) -> str:
    parts = text.splitlines()
    if verbose or len(parts) <= lines:
        return text
    return "\n".join(parts[:lines]) + f"\n… {len(parts) - lines} more lines (-v shows all)"
