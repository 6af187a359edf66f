"""Reading the root model's reply: code blocks, and the textual FINAL fallback."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)
_CODE_LANGS = {"", "python", "py", "python3", "repl"}
_FINAL = re.compile(r"^\s*FINAL\((.*)\)\s*$", re.S | re.M)
_FINAL_VAR = re.compile(r"^\s*FINAL_VAR\(\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?\s*\)\s*$", re.M)


def code_blocks(text: str) -> list[str]:
    """Fenced blocks labelled python, py, repl, or unlabelled, in order."""
    return [body for lang, body in _FENCE.findall(text) if lang.lower() in _CODE_LANGS and body.strip()]


def textual_final(text: str) -> tuple[str, str] | None:
    """('answer', text) or ('var', name) for a FINAL written outside code; None otherwise."""
    outside = _FENCE.sub("", text)
    m = _FINAL_VAR.search(outside)
    if m:
        return "var", m.group(1)
    m = _FINAL.search(outside)
    if m:
        answer = m.group(1).strip()
        if len(answer) >= 2 and answer[0] == answer[-1] and answer[0] in "'\"":
            answer = answer[1:-1]
        return "answer", answer
    return None
