"""Follow-up questions: `rlm ask -c` / `--cid RUN`, and every question of `rlm chat` after the first.

A follow-up run starts with the earlier questions of its conversation, their answers, the pages
those answers cited and the variables the model built, within a bounded share of the root
model's context window (the newest exchanges kept first). Runs are linked through their traces:
each follow-up's `run_started` event names the run it `follows`, so the conversation is read back
from the trace files alone, one link at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SHARE = 0.25  # of the root model's context window, at most, for earlier exchanges
CHARS_PER_TOKEN = 3  # a cautious estimate: the share is rarely overshot
DEFAULT_WINDOW = 128_000  # tokens, when the model's window is unknown
MAX_CHARS = 120_000  # whatever the window
ANSWER_CHARS = 6_000  # of one earlier answer (head and tail kept, the cut stated)
MAX_EXCHANGES = 20  # links followed back
MAX_VARIABLES = 30
_CITE = re.compile(r"\[[^\[\]]+?(?:,\s*|\s+)(?:p|pp|page|pages)\.?\s*\d+[^\[\]]*\]|\[[^\[\]\s:]+\.[A-Za-z0-9]{1,8}:\d+(?:-\d+)?\]", re.I)


@dataclass
class Exchange:
    run_id: str
    question: str
    answer: str
    status: str
    follows: str | None = None
    cited: list[str] = field(default_factory=list)  # citations as the answer wrote them
    variables: list[str] = field(default_factory=list)  # names the model's cells set
    alive: bool = False  # the variables are still defined in the REPL (chat)


def exchange_of(path: Path) -> Exchange | None:
    """One question and its answer, read from a run's trace; None for a trace without a question."""
    from rlmcli.engine import events as ev
    from rlmcli.trace.store import load

    events = load(path)
    started = next((e for e in events if isinstance(e, ev.RunStarted) and e.depth == 0), None)
    if started is None:
        return None
    final = next((e for e in reversed(events) if isinstance(e, ev.FinalAnswer) and e.depth == 0), None)
    names: list[str] = []
    for e in events:
        if isinstance(e, ev.CellOutput) and e.depth == 0:
            names += [n for n in e.changed if n not in names]
    answer = final.answer if final else ""
    return Exchange(run_id=path.stem, question=started.question, answer=answer,
                    status=final.status if final else "unfinished", follows=started.follows,
                    cited=list(dict.fromkeys(_CITE.findall(answer))), variables=names[:MAX_VARIABLES])


def conversation(runs_dir: Path, last: Path) -> list[Exchange]:
    """The exchanges that end with the run at `last`, oldest first (links followed back from it)."""
    out: list[Exchange] = []
    seen: set[str] = set()
    path: Path | None = last
    while path is not None and path.stem not in seen and len(out) < MAX_EXCHANGES:
        seen.add(path.stem)
        found = exchange_of(path)
        if found is None:
            break
        out.append(found)
        previous = runs_dir / f"{found.follows}.jsonl" if found.follows else None
        path = previous if previous is not None and previous.is_file() else None
    return out[::-1]


def budget_chars(model: str) -> int:
    from rlmcli.engine.providers import catalog

    window = catalog.context_window(model) or DEFAULT_WINDOW
    return min(MAX_CHARS, int(window * SHARE * CHARS_PER_TOKEN))


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half:,} characters of this answer cut ...]\n{text[-half:]}"


def _block(n: int, x: Exchange) -> str:
    lines = [f"--- earlier question {n} (run {x.run_id}, {x.status})", f"Q: {x.question}",
             f"A: {_cut(x.answer.strip(), ANSWER_CHARS) or '(no answer)'}"]
    if x.cited:
        lines.append("Cited: " + ", ".join(x.cited[:40]))
    if x.variables:
        state = ("still defined in the REPL" if x.alive
                 else "not in this REPL: it starts empty, so rebuild what you need")
        lines.append(f"Variables it built ({state}): {', '.join(x.variables)}")
    return "\n".join(lines)


def context_text(exchanges: list[Exchange], limit: int) -> str:
    """The earlier exchanges for the first message, newest kept first, within `limit` characters."""
    if not exchanges:
        return ""
    head = ("This question follows earlier ones in the same conversation (oldest first). Use them to "
            "understand what the question refers to; check in the documents anything your answer rests on, "
            "and cite pages as usual.")
    blocks: list[str] = []
    used = len(head)
    for n, x in reversed(list(enumerate(exchanges, start=1))):
        block = _block(n, x)
        if used + len(block) > limit:
            block = _block(n, Exchange(x.run_id, x.question, _cut(x.answer, max(200, limit - used - 600)),
                                       x.status, x.follows, x.cited[:10], x.variables[:10], x.alive))
            if used + len(block) > limit:
                break
        blocks.append(block)
        used += len(block) + 1
    left_out = len(exchanges) - len(blocks)
    note = [f"({left_out} earlier exchange(s) left out to stay within the context budget)"] if left_out else []
    return "\n".join([head, *note, *blocks[::-1]])


def previous_run(ws_root: Path, cid: str | None) -> Path:
    """The trace to continue: `--cid RUN` (an id or a unique prefix), else the run that finished
    last in the workspace (ids name the second a run started, so two in one second tie)."""
    from rlmcli.errors import UsageError
    from rlmcli.trace.store import find_run

    if cid is not None:
        return find_run(ws_root, cid)
    runs = list((ws_root / "runs").glob("*.jsonl"))
    if not runs:
        raise UsageError(f"-c: no earlier run in {ws_root} to continue: ask a first question without -c")
    return max(runs, key=lambda p: (p.stat().st_mtime_ns, p.name))
