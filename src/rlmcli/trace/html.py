"""`rlm trace RUN --html out.html`: one self-contained page that folds and unfolds the run tree."""

from __future__ import annotations

import html
import json
from pathlib import Path

from rlmcli.engine.events import Event
from rlmcli.trace.tree import Node, TraceTree

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
details{margin-left:1.2em;border-left:1px solid #ccc;padding-left:.6em}
summary{cursor:pointer} pre{background:#f6f8fa;padding:.6em;overflow-x:auto;white-space:pre-wrap}
.err{color:#b00020}.ok{color:#0a7d32}.final{font-weight:bold;color:#0a7d32}.partial{color:#a15c00}
.footer{margin-top:1em;font-weight:bold}
"""


def _node(node: Node) -> str:
    d = node.data
    esc = html.escape
    if node.kind == "run":
        head = f"<b>{esc('rlm' if d['depth'] == 0 else 'rlm_query run')}</b> · {esc(d['question'])} · <i>{esc(d['model'])}</i>"
        body = "".join(_node(c) for c in node.children)
        return f"<details open><summary>{head}</summary>{body}</details>"
    if node.kind == "iteration":
        body = "".join(_node(c) for c in node.children)
        return f"<details open><summary>iteration {d['n']}</summary>{body}</details>"
    if node.kind == "text":
        return f"<details><summary>model text</summary><pre>{esc(d['text'])}</pre></details>"
    if node.kind == "code":
        first = esc(d["code"].strip().splitlines()[0] if d["code"].strip() else "")
        return f"<details><summary>code: <code>{first}</code></summary><pre>{esc(d['code'])}</pre></details>"
    if node.kind == "output":
        cls = "err" if d["error"] else "ok"
        return (f"<details><summary class='{cls}'>output ({d['duration']:.2f}s)</summary>"
                f"<pre>{esc(d['output'])}</pre></details>")
    if node.kind == "subcall":
        count = f" {d['done']}/{d['total']}" if d["kind"] == "llm_batch" else ""
        body = "".join(_node(c) for c in node.children)
        return f"<details><summary>{esc(d['kind'])} → {esc(d['model'])}{count}</summary>{body}</details>"
    if node.kind == "final":
        cls = "final" if d["status"] == "answered" else "partial"
        return f"<div class='{cls}'>FINAL ({esc(str(d['status']))}): <pre>{esc(d['answer'])}</pre></div>"
    return ""


def write_html(events: list[Event], out: Path, title: str = "rlm trace") -> None:
    tree = TraceTree()
    for e in events:
        tree(e)
    body = _node(tree.root) if tree.root else "<p>empty trace</p>"
    data = json.dumps([e.to_dict() for e in events], default=str).replace("</", "<\\/")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}<div class='footer'>{html.escape(tree.footer_text())}</div>"
            f"<script type='application/json' id='events'>{data}</script></body></html>")
    out.write_text(page, encoding="utf-8")
