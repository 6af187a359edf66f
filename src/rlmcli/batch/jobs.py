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


MISSING = ("fail", "skip")  # a job line's "missing": what a file that is not there does to the job


@dataclass
class Job:
    id: str
    question: str
    files: list[str] = field(default_factory=list)  # the files to ingest (those found, when "missing": "skip")
    workspace: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # JOB_SETTINGS for this job
    missing: list[str] = field(default_factory=list)  # named on the line, not there when the file was read
    on_missing: str = "fail"  # "fail": the job fails naming them; "skip": it runs over the rest
    line: int = 0  # in the job file (0: not from a file)

    @property
    def inputs_key(self) -> tuple[str, ...]:
        """Jobs with the same key share one workspace (ingested once)."""
        return tuple(sorted(self.files)) if self.files else ("-w", self.workspace or "")

    @property
    def missing_problem(self) -> str | None:
        """Why the job cannot run for its missing files, or None."""
        if not self.missing or (self.on_missing == "skip" and (self.files or self.workspace)):
            return None
        return f"no such file: {', '.join(self.missing)}"


@dataclass
class JobError:
    line: int
    message: str


def read_lines(path: Path) -> list[tuple[int, str | None, str]]:
    """(line number, text, problem) for each line: decoded one by one, so one bad byte costs one
    line, not the file. Lines end at \n only (a U+2028 inside a JSON string is not a line end)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    return decode_lines(data)


def decode_lines(data: bytes) -> list[tuple[int, str | None, str]]:
    if data.startswith(b"\xef\xbb\xbf"):  # a byte-order mark some editors write
        data = data[3:]
    out: list[tuple[int, str | None, str]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            out.append((number, raw.rstrip(b"\r").decode("utf-8"), ""))
        except UnicodeDecodeError as exc:
            out.append((number, None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                                      "the line was skipped"))
    return out


def parse_jobs(path: Path) -> tuple[list[Job], list[JobError]]:
    """Jobs from a JSONL file; a malformed line becomes an error naming its line number."""
    jobs: list[Job] = []
    errors: list[JobError] = []
    seen: set[str] = set()
    for number, line, problem in read_lines(path):
        if line is None:
            errors.append(JobError(number, problem))
            continue
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
    on_missing = raw.get("missing", "fail")
    if on_missing not in MISSING:
        raise ValueError(f"'missing' must be {' or '.join(repr(m) for m in MISSING)}, not {on_missing!r}")
    if job_id in seen:
        raise ValueError(f"duplicate id {job_id!r}")
    unknown = set(raw) - {"id", "question", "files", "workspace", "missing", *JOB_SETTINGS}
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
    overrides = {k: raw[k] for k in JOB_SETTINGS if k in raw}
    Settings().override(overrides, f"line {number}")  # checked now: a bad value fails this line only
    seen.add(job_id)
    paths = [f if f == "-" or os.path.isabs(f) else str(base / f) for f in files]
    missing = [f for f in paths if f != "-" and _absent(f)]
    return Job(job_id, question, [f for f in paths if f not in missing], workspace, overrides, missing, on_missing,
               number)


def _absent(path: str) -> bool:
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False  # there but not reachable (permissions): ingest names the real reason
    return False


def question_id(question: str, inputs: list[str] | None = None) -> str:
    """A job's id when its line gives none: a short hash of its question (and of the documents it
    names), so inserting or moving lines changes no id, and a changed question is a new job."""
    digest = hashlib.sha256(" ".join(question.split()).encode("utf-8"))
    for item in inputs or []:
        digest.update(b"\0" + item.encode("utf-8"))
    return "q-" + digest.hexdigest()[:10]


def question_jobs(questions: Path, files: list[str], each: bool = False) -> tuple[list[Job], list[JobError]]:
    """`--questions Q.txt FILE...`: one job per distinct non-empty line, all over the same files,
    its id a hash of its text."""
    return question_jobs_from(read_lines(questions), files, each)


def question_jobs_from(lines: list[tuple[int, str | None, str]], files: list[str],
                       each: bool = False) -> tuple[list[Job], list[JobError]]:
    """Jobs from decoded question lines (see `read_lines`). A line that is not UTF-8 is an error
    naming it; the rest still run."""
    questions: list[tuple[int, str]] = []
    errors: list[JobError] = []
    for number, line, problem in lines:
        if line is None:
            errors.append(JobError(number, problem))
        elif line.strip() and not line.strip().startswith("#"):
            questions.append((number, line.strip()))
    return jobs_from_questions(questions, files, each), errors


def jobs_from_questions(questions: list[tuple[int, str]], files: list[str], each: bool) -> list[Job]:
    """Each question over all FILEs (id: the question's hash), or with `each` over each FILE alone
    (id: the file's name, plus `:` and the question's hash when there are several questions). A
    question written twice is asked once."""
    jobs: dict[str, Job] = {}
    if not each:
        for n, q in questions:
            jobs.setdefault(question_id(q), Job(question_id(q), q, list(files), line=n))
        return list(jobs.values())
    names = [os.path.basename(f.rstrip("/")) or f for f in files]
    labels = [name if names.count(name) == 1 else f for name, f in zip(names, files, strict=True)]
    distinct = {question_id(q) for _, q in questions}
    for label, f in zip(labels, files, strict=True):
        for n, q in questions:
            job_id = label if len(distinct) == 1 else f"{label}:{question_id(q)}"
            jobs.setdefault(job_id, Job(job_id, q, [f], line=n))
    return list(jobs.values())
