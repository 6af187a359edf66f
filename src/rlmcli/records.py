"""The typed records that cross rooms: a document as the manifest lists it, how a run ended,
what a sub-call came to, where work runs, how far a citation was checked.

Each enum is a `str` equal to its value, so JSON on disk and in `--json` (the manifest,
`rlm.answer/1`, batch results, trace events) keeps its shape, and records read back from old
files compare equal to the members. Standard library only: the sandbox child imports the
workspace reader, which imports this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar


class TextEnum(str, Enum):
    """An enum whose members are their value wherever text is made (str(), f-strings, JSON)."""

    def __str__(self) -> str:
        return str(self.value)


class RunStatus(TextEnum):
    """How a run ended (`status` in `rlm.answer/1`, batch results and traces)."""

    ANSWERED = "answered"  # FINAL was called and accepted
    PARTIAL = "partial"  # a limit stopped it: the best answer so far, with `limit` saying which
    FAILED = "failed"  # the provider failed (or a batch job could not run): no answer
    SKIPPED = "skipped"  # batch only: a job not started, or stopped by the batch's --max-cost


class Limit(TextEnum):
    """What stopped a partial run (`limit` in `rlm.answer/1`), or what a budget warning is about."""

    TIMEOUT = "timeout"
    MAX_CALLS = "max-calls"
    MAX_TOKENS = "max-tokens"
    MAX_COST = "max-cost"
    MAX_ITERATIONS = "max-iterations"
    INTERRUPTED = "interrupted"  # Ctrl-C
    CANCELLED = "cancelled"  # the MCP client cancelled the call
    SCHEMA = "schema"  # the answer kept failing --schema
    BATCH_MAX_COST = "batch-max-cost"  # the batch's --max-cost, not the job's own: a rerun runs it


class ExecutorKind(TextEnum):
    """Where ingest extraction and batch jobs run (`--executor`)."""

    LOCAL = "local"  # threads and worker processes on this machine
    RAY = "ray"  # tasks on a Ray cluster (RAY_ADDRESS)


class CitationState(TextEnum):
    """How far a citation was checked (rlmcli.answer); its mark says no more than that."""

    VERIFIED = "verified"  # the page exists and every quotation beside the citation is on it
    UNCHECKED = "unchecked"  # the page exists; nothing was quoted, so the claim was not checked
    FAILED = "failed"  # no such document, page or line, or a quotation is not on that page

    @property
    def mark(self) -> str:
        return _MARKS[self]


_MARKS = {CitationState.VERIFIED: "✓", CitationState.UNCHECKED: "○", CitationState.FAILED: "✗"}


@dataclass(frozen=True)
class SubcallOutcome:
    """What one sub-call (llm_query, an llm_batch item, rlm_query, look) came to: an answer, or
    why there is none. Model code reads it as text (`for_model`): a failure is a line starting
    with 'ERROR:', so the model can read it, and one failure in a batch stays in its own slot."""

    text: str  # the answer, or what went wrong in words the model can act on
    ok: bool = True

    @classmethod
    def failure(cls, reason: str) -> SubcallOutcome:
        return cls(reason, ok=False)

    def for_model(self) -> str:
        return self.text if self.ok else f"ERROR: {self.text}"


@dataclass(frozen=True)
class DocumentRecord:
    """One document as manifest.json lists it: a summary of its docs/<id>/meta.json."""

    name: str  # what the user calls it: the file name, or 'stdin'
    source: str  # absolute path, '-' for stdin, 'mail.eml#report.pdf' for an attachment
    aliases: list[str]  # other paths ingested with the same content
    sha256: str
    size: int
    mtime_ns: int
    type: str  # pdf, docx, text, code, ...
    extractor: str
    pages: int
    chars: int
    tokens: int
    warnings: list[str] = field(default_factory=list)
    card: dict[str, str] = field(default_factory=dict)  # title, company, form, fiscal year (cards.py)
    ocr_pages: list[int] = field(default_factory=list)  # pages whose text came from OCR
    extraction: str = ""  # the options that shaped its text ('ocr=always'); '' for the defaults

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "source", "aliases", "sha256", "size", "mtime_ns", "type", "extractor", "pages", "chars",
                "tokens", "warnings")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocumentRecord:
        """From a manifest entry or a meta.json (whose other fields are left out); KeyError when
        a required field is missing."""
        return cls(
            name=str(data["name"]), source=str(data["source"]), aliases=[str(a) for a in data["aliases"]],
            sha256=str(data["sha256"]), size=int(data["size"]), mtime_ns=int(data["mtime_ns"]),
            type=str(data["type"]), extractor=str(data["extractor"]), pages=int(data["pages"]),
            chars=int(data["chars"]), tokens=int(data["tokens"]), warnings=[str(w) for w in data["warnings"]],
            card=dict(data.get("card") or {}), ocr_pages=[int(p) for p in data.get("ocr_pages") or ()],
            extraction=str(data.get("extraction") or ""),
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest entry: the required fields, and the optional ones only when set."""
        out: dict[str, Any] = {k: getattr(self, k) for k in self.REQUIRED}
        for key in ("card", "ocr_pages", "extraction"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out
