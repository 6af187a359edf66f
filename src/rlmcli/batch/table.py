"""The results file as a table: `rlm batch ... --format csv` prints it on stdout when the batch ends.

One row per job (per item with --schema-multi), from the newest line of each id in the results
file, resumed rows included: job id, document, status, [item], one column per schema field, the
field citations with their marks, the error. Without a schema the answer is one column.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from rlmcli.records import CitationState

MARKS = {state.value: state.mark for state in CitationState}
_ITEM = re.compile(r"items\[(\d+)\]\.?(.*)")


def latest_rows(results: Path, order: list[str] | None = None) -> list[dict[str, Any]]:
    """The newest line of each id; ids in `order` first (the job file's order), then the rest as
    they first appear in the file. Lines cut by a kill are skipped."""
    latest: dict[str, dict[str, Any]] = {}
    if results.exists():
        for line in results.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                latest[str(row["id"])] = row
            except (ValueError, KeyError, TypeError):
                continue
    ids = [i for i in dict.fromkeys(order or []) if i in latest]
    ids += [i for i in latest if i not in set(ids)]
    return [latest[i] for i in ids]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _cites(citations: list[Any], item: int | None) -> str:
    """'notice_days: [contract.pdf p.7] ✓; ...' for one row (one item's citations for --schema-multi)."""
    out = []
    for c in citations:
        if not isinstance(c, dict):
            continue
        name = str(c.get("field") or "")
        m = _ITEM.match(name)
        if item is not None:
            if not m or int(m.group(1)) != item:
                continue
            name = m.group(2)
        mark = MARKS.get(str(c.get("status")), str(c.get("status") or ""))
        out.append(f"{name + ': ' if name else ''}{c.get('text', '')} {mark}".strip())
    return "; ".join(out)


def csv_text(rows: list[dict[str, Any]], fields: list[str], is_multi: bool,
             documents: dict[str, str] | None = None) -> str:
    """The table as CSV text (RFC 4180)."""
    documents = documents or {}
    buf = io.StringIO()
    out = csv.writer(buf)
    columns = fields or ["answer"]
    out.writerow(["id", "document", "status", *(["item"] if is_multi else []), *columns, "citations", "error"])
    for row in rows:
        rid = str(row.get("id", ""))
        document = documents.get(rid) or Path(str(row.get("workspace") or "")).name
        head = [rid, document, str(row.get("status", ""))]
        citations = row.get("citations") or []
        error = row.get("error") or "; ".join(row.get("schema_errors") or [])
        data = row.get("data")
        if not fields:
            out.writerow([*head, row.get("answer") or "", _cites(citations, None), error])
            continue
        if is_multi:
            items = data.get("items") if isinstance(data, dict) else None
            if not isinstance(items, list) or not items:
                out.writerow([*head, "", *["" for _ in fields], "", error])
                continue
            for n, item in enumerate(items):
                values = item if isinstance(item, dict) else {}
                out.writerow([*head, n + 1, *[_cell(values.get(f)) for f in fields], _cites(citations, n), error])
            continue
        values = data if isinstance(data, dict) else {}
        out.writerow([*head, *[_cell(values.get(f)) for f in fields], _cites(citations, None), error])
    return buf.getvalue()
