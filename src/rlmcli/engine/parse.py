"""Reading the root model's reply: code blocks, and the textual FINAL fallback.

Both scans are linear in the reply's length whatever it holds (a reply full of unclosed ``` or
FINAL( must not cost quadratic time): fences are paired in one pass over their positions, and a
textual FINAL is cut at the last closing parenthesis found by one reverse search.
"""

from __future__ import annotations

import re

_CODE_LANGS = {"", "python", "py", "python3", "repl"}
_LANG = re.compile(r"[ \t]*([A-Za-z0-9_+-]*)")
_FINAL_VAR = re.compile(r"FINAL_VAR\(\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?\s*\)\s*$")


def _fenced(text: str) -> tuple[list[tuple[str, str]], str]:
    """([(language, body)], the text outside fences). An opening fence without a closing one
    ends the scan: what follows is prose."""
    blocks: list[tuple[str, str]] = []
    outside: list[str] = []
    pos = 0
    while True:
        start = text.find("```", pos)
        if start < 0:
            break
        newline = text.find("\n", start + 3)
        end = text.find("```", newline + 1) if newline >= 0 else -1
        if newline < 0 or end < 0:
            break
        outside.append(text[pos:start])
        lang_match = _LANG.match(text, start + 3, newline)
        lang = lang_match.group(1) if lang_match else ""
        blocks.append((lang, text[newline + 1:end]))
        pos = end + 3
    outside.append(text[pos:])
    return blocks, "".join(outside)


def code_blocks(text: str) -> list[str]:
    """Fenced blocks labelled python, py, repl, or unlabelled, in order."""
    return [body for lang, body in _fenced(text)[0] if lang.lower() in _CODE_LANGS and body.strip()]


def textual_final(text: str) -> tuple[str, str] | None:
    """('answer', text) or ('var', name) for a FINAL written outside code, at the start of a
    line; None otherwise."""
    outside = _fenced(text)[1]
    for line_start in _line_starts(outside, "FINAL_VAR("):
        line_end = outside.find("\n", line_start)
        m = _FINAL_VAR.match(outside, line_start, len(outside) if line_end < 0 else line_end)
        if m:
            return "var", m.group(1)
    for line_start in _line_starts(outside, "FINAL("):
        close = _last_closing(outside, line_start + len("FINAL("))
        if close is None:
            return None  # no closing parenthesis after the first FINAL( means none after any later one
        answer = outside[line_start + len("FINAL("):close].strip()
        if len(answer) >= 2 and answer[0] == answer[-1] and answer[0] in "'\"":
            answer = answer[1:-1]
        return "answer", answer
    return None


def _line_starts(text: str, word: str) -> list[int]:
    """Positions where `word` begins a line (after optional spaces)."""
    return [m.end() - len(word) for m in re.finditer(r"(?m)^[ \t]*" + re.escape(word), text)]


def _last_closing(text: str, start: int) -> int | None:
    """The last ')' after `start` that only whitespace follows to the end of its line; lines are
    visited from the end, each once."""
    end = len(text)
    while end > start:
        line_start = max(text.rfind("\n", start, end) + 1, start)
        kept = len(text[line_start:end].rstrip())
        if kept and text[line_start + kept - 1] == ")":
            return line_start + kept - 1
        end = line_start - 1
    return None
