"""The results file is the batch's memory: each finished job is appended at once as one JSON
line (the `ask --json` object plus the job id), so a killed batch loses nothing it finished, and
a re-run skips the ids already there (failed ones too, unless rerun_failed)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from rlmcli.errors import UsageError

BATCH_LIMIT = "batch-max-cost"  # the `limit` of a job the batch's --max-cost stopped mid-run


def finished_ids(results: Path, rerun_failed: bool, questions: dict[str, str] | None = None) -> set[str]:
    """Ids whose latest result line counts as done. Never done: jobs the batch budget skipped or
    cut short (a rerun finishes them), and ids whose recorded question is not `questions[id]`."""
    latest: dict[str, dict[str, Any]] = {}
    if results.exists():
        for line in results.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                latest[str(row["id"])] = row
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill
    done = set()
    for job_id, row in latest.items():
        status = row.get("status", "failed")
        if status == "skipped" or row.get("limit") == BATCH_LIMIT or (rerun_failed and status == "failed"):
            continue
        asked = row.get("question")
        if questions is not None and isinstance(asked, str) and job_id in questions and questions[job_id] != asked:
            continue  # the question under this id changed
        done.add(job_id)
    return done



class ResultsFile:
    """Appends one JSON line per finished job, flushed and synced at once. Only the driver writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        try:  # fail before the first job, not after it
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a+b") as fh:
                if fh.seek(0, os.SEEK_END):
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":  # a kill cut the last line: start ours on a fresh one
                        fh.write(b"\n")
        except OSError as exc:
            raise UsageError(f"{path}: cannot write results there ({exc.strerror or exc})") from None

    def append(self, row: dict[str, Any]) -> None:
        data = json.dumps(row, ensure_ascii=False, default=str) + "\n"
        with self.lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
