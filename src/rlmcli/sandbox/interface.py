"""What the engine needs from a sandbox, and nothing more: run a cell, reset, close.

`process.Sandbox` (a confined child process) is the implementation; the engine is handed a
factory and never imports it, so another isolation (a container, a remote kernel) slots in here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

RequestHandler = Callable[[str, dict[str, Any]], Any]


@dataclass
class CellResult:
    stdout: str = ""
    stderr: str = ""
    stdout_total: int = 0  # bytes (UTF-8) printed, including any beyond the cap
    stderr_total: int = 0
    changed: list[str] = field(default_factory=list)
    duration: float = 0.0
    final: str | None = None
    error: bool = False
    restarted: bool = False  # the child was killed and restarted: variables are gone
    timed_out: bool = False
    looked: bool = False  # the cell read the workspace (a helper or a file under it)

    def full_output(self) -> str:
        """All kept output for the trace, saying where the hard cap cut it."""
        parts = []
        for text, total, name in ((self.stdout, self.stdout_total, "stdout"), (self.stderr, self.stderr_total, "stderr")):
            if text:
                parts.append(text)
            kept = len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
            if total > kept:
                parts.append(f"\n[{name} cut at {kept:,} bytes; {total:,} bytes were printed]\n")
        return "".join(parts)

    def for_model(self, limit: int) -> str:
        """Output for the model: head and tail kept, the cut stated with what to do instead."""
        text = self.full_output()
        if not text.strip():
            text = "(no output)" if not self.changed else f"(no output; variables set: {', '.join(self.changed)})"
        if len(text) <= limit:
            return text
        head, tail = text[: limit // 2], text[-(limit // 2):]
        cut = len(text) - len(head) - len(tail)
        return (f"{head}\n... [{cut:,} characters cut from the middle; {len(text):,} in all. Only {limit:,} characters "
                "of each cell's output are shown: print slices, counts or summaries, and use grep()/search() to "
                f"locate text] ...\n{tail}")


class Repl(Protocol):
    """A started sandbox. `on_request` serves llm_query and friends coming out of model code."""

    layers: list[str]
    on_request: RequestHandler | None

    @property
    def max_output(self) -> int: ...

    def run(self, code: str, timeout: float | None = None, wall: float | None = None) -> CellResult:
        """Run one cell. `timeout` (seconds) may only shorten the sandbox's own cell limit, which
        excludes time serving model requests; `wall` (monotonic) bounds everything."""
        ...

    def reset(self) -> None:
        """Start over for a new run in a fresh process: nothing earlier code did survives."""
        ...

    def close(self) -> None: ...


SandboxFactory = Callable[[Path], Repl]
