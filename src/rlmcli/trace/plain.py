"""Plain, timestamped lines on stderr: no colour, no control codes (pipes, cron, logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rlmcli.engine import events as ev
from rlmcli.engine.events import Event


def _first_line(text: str, width: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


class PlainView:
    """One line per step; `verbose` prints full code and outputs."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose

    def _out(self, depth: int, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.stream.write(f"{stamp} {'  ' * depth}{text}\n")
        self.stream.flush()

    def __call__(self, e: Event) -> None:
        d = e.data
        if e.kind == ev.RUN_STARTED:
            self._out(e.depth, f"run: {d['model']} over {d['workspace']} (sandbox: {', '.join(d['sandbox'])})")
        elif e.kind == ev.ITERATION_STARTED:
            self._out(e.depth, f"iteration {d['iteration']}")
        elif e.kind == ev.CODE_CELL:
            code = d["code"].rstrip()
            if self.verbose:
                self._out(e.depth + 1, "code:\n" + code)
            else:
                lines = code.count("\n") + 1
                self._out(e.depth + 1, f"code: {_first_line(code)}" + (f" (+{lines - 1} lines)" if lines > 1 else ""))
        elif e.kind == ev.CELL_OUTPUT:
            text = d["output"] if self.verbose else _first_line(d["shown"])
            flag = " [error]" if d["error"] else ""
            self._out(e.depth + 1, f"output{flag} ({d['duration']:.2f}s): {text}")
        elif e.kind == ev.SUBCALL_STARTED:
            what = f"{d['size']} prompts" if d["kind"] == "llm_batch" else f"{d['size']:,} chars"
            self._out(e.depth + 1, f"{d['kind']} → {d['model']} ({what})")
        elif e.kind == ev.SUBCALL_FINISHED and d["kind"] == "llm_batch":
            self._out(e.depth + 1, f"llm_batch done {d['done']}/{d['total']}" + (f", {d['failed']} failed" if d.get("failed") else ""))
        elif e.kind == ev.BUDGET_WARNING:
            self._out(e.depth, f"budget warning: {d['limit']} at {d['used']:g} of {d['max']:g}")
        elif e.kind == ev.RUN_FINISHED and e.depth == 0:
            u = d.get("usage") or {}
            cost = u.get("cost")
            money = f"${cost:.4f}" if cost is not None else "cost unknown"
            limit = f" ({d['limit']})" if d.get("limit") else ""
            self._out(0, f"{d['status']}{limit} after {d['iterations']} iterations, {u.get('calls', 0)} calls, "
                         f"{u.get('prompt_tokens', 0) + u.get('completion_tokens', 0):,} tokens, {money}, {d['seconds']:.1f}s")
