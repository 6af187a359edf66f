"""The live Rich tree on a terminal, with a footer of iterations, calls, tokens, cost and time.

The live region never grows taller than the terminal: finished iterations fold to one line each
and whatever still does not fit is cropped, so nothing is repeated in the scrollback. A reply
streams in as it arrives and is replaced by its cells when it ends. When the run ends the live
region is erased and the tree is printed once: whole when it fits the terminal (exactly what
`rlm trace` replays), else with its oldest iterations folded to one line each (all of it with -v).
"""

from __future__ import annotations

from typing import Any

from rlmcli.engine.events import Event
from rlmcli.trace.render import TraceTree


class LiveView:
    """An observer that redraws the tree as events arrive (Rich Live on stderr)."""

    def __init__(self, console: Any, verbose: bool = False) -> None:
        from rich.live import Live

        self.tree = TraceTree()
        self.verbose = verbose
        self.console = console
        self.live = Live(console=console, refresh_per_second=8, transient=True, vertical_overflow="crop",
                         get_renderable=self._frame)

    def _frame(self) -> Any:
        return self._fit(max(5, self.console.size.height - 2), final=False)

    def _fit(self, height: int, final: bool) -> Any:
        """The tree folded to `height` lines. Folding works on an estimate of each node's height;
        long lines wrap, so the rendered frame is measured and folded further while it is too tall."""
        budget = height
        width = self.console.size.width
        for _ in range(4):
            frame = self.tree.render(self.verbose and final, max_lines=budget, final=final, width=width)
            lines = len(self.console.render_lines(frame, self.console.options, pad=False))
            if lines <= height:
                break
            budget -= lines - height
        return frame  # still too tall (one huge iteration): Live crops it; at the end it scrolls

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __call__(self, event: Event) -> None:
        self.tree(event)

    def __exit__(self, *exc: object) -> None:
        self.live.stop()  # transient: the live region is erased
        # Room is left for the answer and the prompt under the tree.
        self.console.print(self._fit(max(5, self.console.size.height - 3), final=True))


def render_events(events: list[Event], console: Any, verbose: bool = False) -> None:
    """Replay: feed saved events to the same tree and print it once."""
    tree = TraceTree()
    for e in events:
        tree(e)
    console.print(tree.render(verbose, width=console.size.width))
    if tree.root is not None and tree.finished is None:
        console.print("✗ the run never finished (the process was killed before it could record an ending)",
                      style="bold red", markup=False)
