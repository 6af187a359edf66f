"""The helpers model code gets in its namespace. Their docstrings are the single source of the
system prompt's helper reference (`helper_reference()`), so keep them short and exact.

Runs inside the sandbox child: only the standard library, reading the workspace (the cwd).
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections.abc import Callable
from typing import Any, Protocol

from rlmcli.workspace.query import Searcher
from rlmcli.workspace.reader import WorkspaceReader


class Channel(Protocol):
    def request(self, kind: str, payload: dict[str, Any]) -> Any: ...


class FinalAnswer(BaseException):
    """Raised by FINAL to end the cell (BaseException, so `except Exception` cannot swallow it)."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.answer = answer


class Text(str):
    """Text that carries where it came from: `.doc`, `.page`, `.lines` and `.cite`."""

    doc: str
    page: int | None
    lines: tuple[int, int] | None

    def __new__(cls, text: str, doc: str, page: int | None = None, lines: tuple[int, int] | None = None) -> Text:
        obj = super().__new__(cls, text)
        obj.doc, obj.page, obj.lines = doc, page, lines
        return obj

    @property
    def cite(self) -> str:
        where = f" p.{self.page}" if self.page else ""
        if self.lines:
            where += f" l.{self.lines[0]}-{self.lines[1]}"
        return f"[{self.doc}{where}]"


class Hit:
    __slots__ = ("doc", "page", "line", "text")

    def __init__(self, doc: str, page: int, line: int, text: str) -> None:
        self.doc, self.page, self.line, self.text = doc, page, line, text

    def __repr__(self) -> str:
        return f"{self.doc} p.{self.page} l.{self.line}: {self.text}"

    __str__ = __repr__


class Hits(list):  # type: ignore[type-arg]
    """grep's result: a list of Hit that prints one per line and says when it was cut."""

    truncated: bool = False
    limit: int = 0

    def __repr__(self) -> str:
        lines = [repr(h) for h in self]
        if self.truncated:
            lines.append(f"... stopped at max_hits={self.limit}; there are more matches (narrow the pattern or raise max_hits)")
        if not self:
            lines.append("(no matches)")
        return "\n".join(lines)

    __str__ = __repr__


class Passages(list):  # type: ignore[type-arg]
    def __repr__(self) -> str:
        return "\n\n".join(repr(p) for p in self) if self else "(no passages found)"

    __str__ = __repr__


_SEP = "\n\x00\n"  # between the pages of the grep corpus


class Corpus:
    """Every page of the workspace as one string with page offsets, for grep. Built on first use
    and kept across runs of a warm sandbox (the workspace does not change under it)."""

    def __init__(self, reader: WorkspaceReader) -> None:
        self.reader = reader
        self.text: str | None = None
        self.lower: str | None = None
        self.starts: list[int] = []
        self.where: list[tuple[str, int]] = []

    def load(self) -> str:
        if self.text is None:
            parts, starts, where, offset = [], [], [], 0
            for doc, rec in self.reader.documents.items():
                for number in range(1, rec["pages"] + 1):
                    text = self.reader.read_page(doc, number)
                    starts.append(offset)
                    where.append((doc, number))
                    parts.append(text)
                    offset += len(text) + len(_SEP)
            self.text = _SEP.join(parts)
            self.starts, self.where = starts, where
        return self.text

    def lowered(self) -> str:
        text = self.load()
        if self.lower is None:
            # Page by page: str.lower() takes a fast path on ASCII strings, which most pages
            # are even when the whole corpus is not (2.5x faster on the R manuals).
            self.lower = _SEP.join(p.lower() for p in text.split(_SEP))
        return self.lower


class Toolkit:
    """State behind the helpers: the reader, the grep corpus, the index, the parent channel."""

    def __init__(self, channel: Channel, namespace: dict[str, Any], corpus: Corpus | None = None) -> None:
        self.channel = channel
        self.namespace = namespace
        self.reader = corpus.reader if corpus is not None else WorkspaceReader(".")
        self.corpus = corpus or Corpus(self.reader)
        self.searcher = Searcher(self.reader, immutable=True)
        self._context: str | None = None
        self.looks = 0  # calls of the reading helpers, so the engine knows the model looked

    @property
    def docs(self) -> dict[str, Any]:
        return self.reader.documents

    def _doc(self, doc: str) -> str:
        return self.reader.resolve(doc)

    def _page_text(self, doc: str, number: int) -> str:
        return self.reader.read_page(doc, number)

    # ---- helpers (their docstrings are the model's reference) ------------------------------------
    def ls(self, path: str = ".") -> list[str]:
        """List a directory of the workspace. `ls('docs')` shows each document with its pages and tokens."""
        self.looks += 1
        norm = os.path.normpath(path)
        if norm == "docs":
            rows = [f"{d}/  {r['type']}, {r['pages']} pages, {r['tokens']:,} tokens" for d, r in self.docs.items()]
            print("\n".join(rows))
            return list(self.docs)
        names = sorted(os.listdir(path))
        print("\n".join(names))
        return names

    def tree(self, depth: int = 2) -> None:
        """Print the workspace tree (documents, their outline.txt and page counts) to `depth` levels."""
        self.looks += 1
        out = ["manifest.json", "index.sqlite", "docs/"]
        for doc, rec in self.docs.items():
            out.append(f"  {doc}/  ({rec['type']}, {rec['pages']} pages, {rec['tokens']:,} tokens)")
            if depth >= 2:
                extra = ", outline.txt" if os.path.exists(os.path.join("docs", doc, "outline.txt")) else ""
                out.append(f"    meta.json{extra}, pages/0001.txt … {rec['pages']:04d}.txt")
        print("\n".join(out))

    def read(self, doc: str, page: int | tuple[int, int] | None = None, start: int | None = None,
             end: int | None = None) -> Text:
        """Text of a page (`page=3`), a page range (`page=(3, 5)`), or lines `start`..`end` (1-based, inclusive) of one page; the whole document when `page` is None. Each page starts with a `[doc p.N]` line."""
        self.looks += 1
        doc = self._doc(doc)
        total = self.docs[doc]["pages"]
        if page is None:
            first, last = 1, total
        elif isinstance(page, (tuple, list, range)):
            first, last = (page[0], page[-1])
        else:
            first = last = int(page)
        if start is not None or end is not None:
            if first != last:
                raise ValueError("start/end select lines of one page: give a single page")
            lines = self._page_text(doc, first).split("\n")
            s = max(1, start or 1)
            e = min(len(lines), end or len(lines))
            body = "\n".join(lines[s - 1:e])
            return Text(f"[{doc} p.{first} l.{s}-{e}]\n{body}", doc, first, (s, e))
        ocr = set(self.docs[doc].get("ocr_pages") or ())  # pages read by OCR say so: their text may have errors
        chunks = [f"[{doc} p.{n}{', OCR' if n in ocr else ''}]\n{self._page_text(doc, n)}" for n in range(first, last + 1)]
        return Text("\n".join(chunks), doc, first if first == last else None)

    def grep(self, pattern: str, doc: str | None = None, ignore_case: bool = True, context: int = 0,
             max_hits: int = 200) -> Hits:
        """Regex search over every page (or one `doc`). Returns hits (doc, page, line, text), one per matching line; `context` adds that many lines around each hit."""
        self.looks += 1
        corpus = self.corpus.load()
        starts, where = self.corpus.starts, self.corpus.where
        plain = re.escape(pattern) == pattern or not re.search(r"[\\.^$*+?{}\[\]|()]", pattern)
        if ignore_case and plain:
            # A literal: search a lower-cased copy with a plain pattern, far faster than re.I.
            haystack, rx = self.corpus.lowered(), re.compile(re.escape(pattern.lower()))
            if len(haystack) != len(corpus):  # lower() changed lengths (rare scripts): use re.I
                haystack, rx = corpus, re.compile(re.escape(pattern), re.I)
        else:
            haystack, rx = corpus, re.compile(pattern, re.I if ignore_case else 0)
        hits = Hits()
        hits.limit = max_hits
        lo, hi = 0, len(corpus)
        if doc is not None:
            doc = self._doc(doc)
            idx = [i for i, (d, _) in enumerate(where) if d == doc]
            lo = starts[idx[0]]
            hi = starts[idx[-1] + 1] if idx[-1] + 1 < len(starts) else len(corpus)
        pos = lo
        while True:
            m = rx.search(haystack, pos, hi)
            if m is None:
                break
            at = m.start()
            i = bisect_right(starts, at) - 1
            page_start = starts[i]
            line_start = corpus.rfind("\n", page_start, at) + 1 if at > page_start else page_start
            line_end = corpus.find("\n", at)
            if line_end == -1:
                line_end = len(corpus)
            d, page = where[i]
            line_no = corpus.count("\n", page_start, line_start) + 1
            text = corpus[line_start:line_end]
            if context:
                page_lines = self._page_text(d, page).split("\n")
                text = "\n".join(page_lines[max(0, line_no - 1 - context):line_no + context])
            if len(hits) >= max_hits:
                hits.truncated = True
                break
            hits.append(Hit(d, page, line_no, text))
            pos = max(line_end + 1, m.end() if m.end() > at else at + 1)
        return hits

    def search(self, query: str, k: int = 10, doc: str | None = None) -> Passages:
        """Ranked full-text search (BM25, stemmed; headings weigh more). Returns up to `k` passages, the best one per page, each with doc, page, line, score and text."""
        self.looks += 1
        return Passages(self.searcher.search(query, k=k, doc=doc))

    def context_text(self) -> str:
        """`context`: the whole workspace as one string, each page preceded by a `=== [doc p.N] ===` line (for slicing by offset)."""
        self.looks += 1
        if self._context is None:
            parts = []
            for doc, rec in self.docs.items():
                for number in range(1, rec["pages"] + 1):
                    parts.append(f"=== [{doc} p.{number}] ===\n{self._page_text(doc, number)}")
            self._context = "\n".join(parts)
        return self._context

    def llm_query(self, prompt: str, model: str | None = None) -> str:
        """Ask a sub-model one question; returns its text. Put the text it must read inside the prompt."""
        return str(self.channel.request("llm_query", {"prompt": str(prompt), "model": model}))

    def llm_batch(self, prompts: list[str], model: str | None = None) -> list[str]:
        """Ask a sub-model many prompts concurrently; returns the answers in order. A failed item holds an error string starting with 'ERROR:'."""
        result = self.channel.request("llm_batch", {"prompts": [str(p) for p in prompts], "model": model})
        return [str(r) for r in result]

    def look(self, doc: str, page: int, question: str = "") -> str:
        """Show a page to a vision model and return its description: a PDF page rendered, or the pictures of a DOCX section or PPTX slide (`[figure]` marks them). For charts, figures and tables that text extraction loses; ask a precise `question`."""
        self.looks += 1
        return str(self.channel.request("look", {"doc": str(doc), "page": page, "question": str(question)}))

    def rlm_query(self, question: str, text_or_docs: str | list[str]) -> str:
        """Delegate a sub-question over a text or a list of doc ids to a recursive run (a plain sub-call when depth is exhausted)."""
        target: Any = list(text_or_docs) if isinstance(text_or_docs, (list, tuple)) else str(text_or_docs)
        return str(self.channel.request("rlm_query", {"question": str(question), "target": target}))

    def FINAL(self, answer: Any) -> None:  # noqa: N802 - the RLM convention
        """End the run with this answer (a string; cite pages like [doc p.N])."""
        raise FinalAnswer(str(answer))

    def FINAL_VAR(self, name: str) -> None:  # noqa: N802
        """End the run with the value of the variable called `name`."""
        if name not in self.namespace:
            raise NameError(f"FINAL_VAR: no variable named {name!r}")
        raise FinalAnswer(str(self.namespace[name]))

    def SHOW_VARS(self) -> dict[str, str]:  # noqa: N802
        """List your variables with their types and sizes."""
        import types

        out = {}
        for name, value in self.namespace.items():
            if name.startswith("_") or name in HELPER_NAMES or isinstance(value, types.ModuleType) or name == "SCRATCH":
                continue
            size = f", len {len(value)}" if hasattr(value, "__len__") else ""
            out[name] = f"{type(value).__name__}{size}"
        print("\n".join(f"{k}: {v}" for k, v in out.items()) or "(no variables)")
        return out

    def bind(self) -> dict[str, Callable[..., Any]]:
        names = {name: getattr(self, name) for name in HELPER_NAMES if name not in ("context", "llm_query_batched")}
        names["llm_query_batched"] = self.llm_batch
        return names


HELPER_NAMES = ("ls", "tree", "read", "grep", "search", "context", "look", "llm_query", "llm_batch", "llm_query_batched",
                "rlm_query", "FINAL", "FINAL_VAR", "SHOW_VARS")


def helper_reference() -> str:
    """The helper section of the system prompt, generated from the docstrings above."""
    import inspect

    lines = []
    for name in HELPER_NAMES:
        if name == "llm_query_batched":
            lines.append("- `llm_query_batched(...)`: the same as `llm_batch`.")
            continue
        if name == "context":
            lines.append(f"- `context`: {(inspect.getdoc(Toolkit.context_text) or '').split(': ', 1)[1]}")
            continue
        fn = getattr(Toolkit, name)
        sig = str(inspect.signature(fn, eval_str=True)).replace("(self, ", "(").replace("(self)", "()")
        sig = re.sub(r" -> .*$", "", sig)
        lines.append(f"- `{name}{sig}`: {inspect.getdoc(fn)}")
    return "\n".join(lines)
