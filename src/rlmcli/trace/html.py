"""`rlm trace RUN --html out.html`: one self-contained page that folds and unfolds the run tree,
with every model request's prompt and reply (folded), tokens, cost, latency and retries."""

from __future__ import annotations

import html
import json
from pathlib import Path

from rlmcli.engine.events import Event
from rlmcli.trace.model import Node, TreeModel

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
details{margin-left:1.2em;border-left:1px solid #ccc;padding-left:.6em}
summary{cursor:pointer} pre{background:#f6f8fa;padding:.6em;overflow-x:auto;white-space:pre-wrap}
.err{color:#b00020}.ok{color:#0a7d32}.final{font-weight:bold;color:#0a7d32}.partial{color:#a15c00}
.note{color:#a15c00}.call{color:#555}.footer{margin-top:1em;font-weight:bold}
.sources ul{list-style:none;padding-left:.6em}.sources li{font-family:monospace}
"""


def _node(node: Node) -> str:
    esc = html.escape
    body = "".join(_node(c) for c in node.children)
    if node.kind == "run":
        head = f"<b>{esc('rlm' if node.depth == 0 else 'rlm_query run')}</b> · {esc(node.question)} · <i>{esc(node.model)}</i>"
        return f"<details open><summary>{head}</summary>{body}</details>"
    if node.kind == "iteration":
        return f"<details open><summary>iteration {node.number}</summary>{body}</details>"
    if node.kind == "text":
        return f"<details><summary>model text</summary><pre>{esc(node.text)}</pre></details>"
    if node.kind == "code":
        first = esc(node.text.strip().splitlines()[0] if node.text.strip() else "")
        return f"<details><summary>code: <code>{first}</code></summary><pre>{esc(node.text)}</pre></details>"
    if node.kind == "output":
        cls = "err" if node.error else "ok"
        return (f"<details><summary class='{cls}'>output ({node.duration:.2f}s)</summary>"
                f"<pre>{esc(node.text)}</pre></details>")
    if node.kind in ("notice", "retry"):
        return f"<div class='note'>{esc(node.text)}</div>"
    if node.kind == "error":
        return f"<div class='err'>{esc(node.text)}</div>"
    if node.kind == "model_call":
        return (f"<details class='call'><summary>call {esc(node.model)} · {esc(node.detail)}</summary>"
                f"<b>prompt</b><pre>{esc(node.text)}</pre><b>reply</b><pre>{esc(node.reply)}</pre></details>")
    if node.kind == "subcall":
        count = f" {node.done}/{node.total}" if node.call == "llm_batch" else ""
        mark = "" if node.ok is None else (" ✓" if node.ok else " ✗")
        retried = f" · {node.retries} retries" if node.retries else ""
        return f"<details><summary>{esc(node.call)} → {esc(node.model)}{count}{mark}{retried}</summary>{body}</details>"
    if node.kind == "sources":
        return f"<div class='sources'><b>Sources</b><ul>{body}</ul></div>"
    if node.kind == "citation":
        cls = {"verified": "ok", "unchecked": "note"}.get(node.status, "err")
        return f"<li class='{cls}' data-status='{esc(node.status)}'>{esc(node.text)}</li>"
    if node.kind == "final" and node.status == "failed":
        return f"<div class='err'>✗ failed{': ' + esc(node.text) if node.text else ''}</div>"
    if node.kind == "final":
        cls = "final" if node.status == "answered" else "partial"
        return f"<div class='{cls}'>FINAL ({esc(node.status)}): <pre>{esc(node.text)}</pre></div>"
    return ""


def _sources(text: str) -> str:
    """The Sources list under the answer, as `rlm ask` prints it: each place with its mark."""
    lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]
    if not lines:
        return ""
    items = "".join(f"<li class='{'err' if line.startswith('✗') else 'ok' if line.startswith('✓') else 'note'}'>"
                    f"{html.escape(line)}</li>" for line in lines)
    return f"<section class='sources'><h3>Sources</h3><ul>{items}</ul></section>"


def write_html(events: list[Event], out: Path, title: str = "rlm trace", sources: str = "") -> None:
    """The page; `sources` is the Sources list (`answer.sources_text`) of the run's answer."""
    tree = TreeModel()
    for e in events:
        tree(e)
    body = (_node(tree.root) if tree.root else "<p>empty trace</p>") + _sources(sources)
    data = json.dumps([e.to_dict() for e in events], default=str).replace("</", "<\\/")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}<div class='footer'>{html.escape(tree.footer_text())}</div>"
            f"<script type='application/json' id='events'>{data}</script></body></html>")
    out.write_text(page, encoding="utf-8")
