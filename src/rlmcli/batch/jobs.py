"""Jobs: what to ask over which documents, from a JSONL job file or a questions file."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlmcli.config import Settings
from rlmcli.errors import UsageError

# Settings a job line may set for itself (the rest belong to the whole batch).
JOB_SETTINGS = ("model", "sub_model", "max_iterations", "max_depth", "max_calls", "max_tokens", "max_cost",
                "timeout", "concurrency")


@dataclass
class Job:
    id: str
    question: str
    files: list[str] = field(default_factory=list)
    workspace: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # JOB_SETTINGS for this job

    @property
    def inputs_key(self) -> tuple[str, ...]:
        """Jobs with the same key share one workspace (ingested once)."""
        return tuple(sorted(self.files)) if self.files else ("-w", self.workspace or "")


@dataclass
class JobError:
    line: int
    message: str


def parse_jobs(path: Path) -> tuple[list[Job], list[JobError]]:
    """Jobs from a JSONL file; a malformed line becomes an error naming its line number."""
    jobs: list[Job] = []
    errors: list[JobError] = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            jobs.append(_job(json.loads(line), number, path.parent, seen))
        except (ValueError, UsageError) as exc:
            errors.append(JobError(number, str(exc)))
    return jobs, errors


def _job(raw: Any, number: int, base: Path, seen: set[str]) -> Job:
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("'question' must be a non-empty string")
    files = raw.get("files") or []
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ValueError("'files' must be a list of paths")
    workspace = raw.get("workspace")
    if workspace is not None and not isinstance(workspace, str):
        raise ValueError("'workspace' must be a string")
    job_id = str(raw.get("id") or question_id(question, [*sorted(files), workspace or ""]))
    if not files and not workspace:
        raise ValueError("a job needs 'files' or 'workspace'")
    if job_id in seen:
        raise ValueError(f"duplicate id {job_id!r}")
    unknown = set(raw) - {"id", "question", "files", "workspace", *JOB_SETTINGS}
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
    overrides = {k: raw[k] for k in JOB_SETTINGS if k in raw}
    Settings().override(overrides, f"line {number}")  # checked now: a bad value fails this line only
    seen.add(job_id)
    return Job(job_id, question, [f if f == "-" or os.path.isabs(f) else str(base / f) for f in files],
               workspace, overrides)


def question_id(question: str, inputs: list[str] | None = None) -> str:
    """A job's id when its line gives none: a short hash of its question (and of the documents it
    names), so inserting or moving lines changes no id, and a changed question is a new job."""
    digest = hashlib.sha256(" ".join(question.split()).encode("utf-8"))
    for item in inputs or []:
        digest.update(b"\0" + item.encode("utf-8"))
    return "q-" + digest.hexdigest()[:10]


def question_jobs(questions: Path, files: list[str]) -> list[Job]:
    """`--questions Q.txt FILE...`: one job per distinct non-empty line, all over the same files,
    its id a hash of its text."""
    lines = [q.strip() for q in questions.read_text(encoding="utf-8").splitlines()]
    jobs = {question_id(q): Job(question_id(q), q, list(files)) for q in lines if q and not q.startswith("#")}
    return list(jobs.values())  # a question written twice is asked once
