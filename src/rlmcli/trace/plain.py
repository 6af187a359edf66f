"""Plain, timestamped lines on stderr: no colour, no control codes (pipes, cron, logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rlmcli.engine import events as ev


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

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.RunStarted):
            self._out(e.depth, f"run: {e.model} over {e.workspace} (sandbox: {', '.join(e.sandbox)})")
        elif isinstance(e, ev.IterationStarted):
            self._out(e.depth, f"iteration {e.iteration}")
        elif isinstance(e, ev.CodeCell):
            code = e.code.rstrip()
            if self.verbose:
                self._out(e.depth + 1, "code:\n" + code)
            else:
                lines = code.count("\n") + 1
                self._out(e.depth + 1, f"code: {_first_line(code)}" + (f" (+{lines - 1} lines)" if lines > 1 else ""))
        elif isinstance(e, ev.CellOutput):
            text = e.output if self.verbose else _first_line(e.shown)
            flag = " [error]" if e.error else ""
            self._out(e.depth + 1, f"output{flag} ({e.duration:.2f}s): {text}")
        elif isinstance(e, ev.Notice):
            self._out(e.depth + 1, f"rlm told the model ({e.reason}): {_first_line(e.text)}")
        elif isinstance(e, ev.SubcallStarted):
            what = f"{e.size} prompts" if e.call == "llm_batch" else f"{e.size:,} chars"
            self._out(e.depth + 1, f"{e.call} → {e.model} ({what})")
        elif isinstance(e, ev.SubcallFinished) and e.call == "llm_batch":
            self._out(e.depth + 1, f"llm_batch done {e.done}/{e.total}" + (f", {e.failed} failed" if e.failed else ""))
        elif isinstance(e, ev.ModelRetry):
            self._out(e.depth + 1, f"{e.model}: retry {e.attempt}/{e.attempts} in {e.delay:.1f} s: {e.reason}")
        elif isinstance(e, ev.ModelError):
            self._out(e.depth + 1, f"model error: {e.message}")
        elif isinstance(e, ev.BudgetWarning):
            self._out(e.depth, f"budget warning: {e.limit} at {e.used:g} of {e.max:g}")
        elif isinstance(e, ev.RunFinished) and e.depth == 0:
            u = e.usage or {}
            from rlmcli.engine.budget import dollars

            money = dollars(u.get("cost"))
            limit = f" ({e.limit})" if e.limit else ""
            self._out(0, f"{e.status}{limit} after {e.iterations} iterations, {u.get('calls', 0)} calls, "
                         f"{u.get('prompt_tokens', 0) + u.get('completion_tokens', 0):,} tokens, {money}, {e.seconds:.1f}s")
