"""The helpers model code gets in its namespace. Their docstrings are the single source of the
system prompt's helper reference (`helper_reference()`), so keep them short and exact.

Runs inside the sandbox child: only the standard library, reading the workspace (the cwd).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any, Protocol

from rlmcli.workspace import grep as grep_engine
from rlmcli.workspace.grep import Hit, Hits, LargeContext, Scanner
from rlmcli.workspace.query import DocMatch, Searcher
from rlmcli.workspace.reader import WorkspaceReader

READ_MAX_CHARS = 8_000_000  # one read() of many pages; a single page is always returned whole


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


class DocList(list):  # type: ignore[type-arg]
    def __repr__(self) -> str:
        return "\n".join(repr(d) for d in self) if self else "(no documents)"

    __str__ = __repr__


class Passages(list):  # type: ignore[type-arg]
    def __repr__(self) -> str:
        return "\n\n".join(repr(p) for p in self) if self else "(no passages found)"

    __str__ = __repr__


class Toolkit:
    """State behind the helpers: the reader, the grep corpus, the index, the parent channel."""

    def __init__(self, channel: Channel, namespace: dict[str, Any], reader: WorkspaceReader | None = None) -> None:
        self.channel = channel
        self.namespace = namespace
        self.reader = reader or WorkspaceReader(".")
        self.scanner = Scanner(self.reader)
        self.searcher = Searcher(self.reader, immutable=True)
        self.looks = 0  # calls of the reading helpers, so the engine knows the model looked

    @property
    def documents(self) -> dict[str, Any]:
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
            rows = [f"{d}/  {r['type']}, {r['pages']} pages, {r['tokens']:,} tokens" for d, r in self.documents.items()]
            print("\n".join(rows))
            return list(self.documents)
        names = sorted(os.listdir(path))
        print("\n".join(names))
        return names

    def tree(self, depth: int = 2) -> None:
        """Print the workspace tree (documents, their outline.txt and page counts) to `depth` levels."""
        self.looks += 1
        out = ["manifest.json", "index.sqlite", "docs/"]
        for doc, rec in self.documents.items():
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
        total = self.documents[doc]["pages"]
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
        index = self.reader.text_index(doc)
        if index is not None and last - first >= 1 and 1 <= first <= last <= index.pages:
            size = index.char_span(last)[1] - index.char_span(first)[0]
            if size > READ_MAX_CHARS:
                raise ValueError(f"{doc} pages {first}-{last} hold {size:,} characters, more than read() returns at once "
                                 f"({READ_MAX_CHARS:,}): read fewer pages, or grep()/search() for the part you need")
        ocr = set(self.documents[doc].get("ocr_pages") or ())  # pages read by OCR say so: their text may have errors
        chunks = [f"[{doc} p.{n}{', OCR' if n in ocr else ''}]\n{self._page_text(doc, n)}" for n in range(first, last + 1)]
        return Text("\n".join(chunks), doc, first if first == last else None)

    def grep(self, pattern: str, doc: str | None = None, ignore_case: bool = True, context: int = 0,
             max_hits: int = 200) -> Hits:
        """Regex search over every page (or the documents `doc` names: a name or a glob like 'r-*.pdf'). Returns hits (doc, page, line, text), one per matching line; `context` adds that many lines around each hit."""
        self.looks += 1
        rx, on_bytes = self.scanner.compile(pattern, ignore_case)
        lower = ignore_case and on_bytes
        needle = None if on_bytes else self.scanner.required(pattern, ignore_case)
        hits = Hits()
        hits.limit = max_hits
        for d in self.reader.select(doc) if doc is not None else list(self.documents):
            for page, line_no, text in self.scanner.scan(d, rx, on_bytes, lower, needle):
                if len(hits) >= max_hits:
                    hits.truncated = True
                    return hits
                if context:
                    page_lines = self._page_text(d, page).split("\n")
                    text = "\n".join(page_lines[max(0, line_no - 1 - context):line_no + context])
                hits.append(Hit(d, page, line_no, text))
        return hits

    def search(self, query: str, k: int = 10, doc: str | list[str] | None = None) -> Passages:
        """Ranked full-text search (BM25, stemmed; headings weigh more; a document the query names — by title, company, form or fiscal year — ranks first). Returns up to `k` passages, the best per page, each with doc, page, line, score and text; `doc` limits it to a name, a glob or a list."""
        self.looks += 1
        return Passages(self.searcher.search(query, k=k, doc=doc))

    def docs(self, query: str | None = None, k: int = 10) -> DocList:
        """Documents ranked by how well `query` names them (file name, title, company, form, fiscal year) and then by their passages; with no query, every document with its title. Each has doc, score, title and card."""
        self.looks += 1
        if query is None:
            rows = [DocMatch(d, 0.0, str((rec.get("card") or {}).get("title") or rec.get("name") or ""),
                             f"{rec['type']}, {rec['pages']} pages") for d, rec in self.documents.items()]
            return DocList(rows)
        return DocList(self.searcher.docs(query, k=k))

    def context_text(self) -> str | LargeContext:
        """`context`: the whole workspace as one string, each page preceded by a `=== [doc p.N] ===` line (for slicing by offset)."""
        self.looks += 1
        segments, total = [], 0
        for doc, rec in self.documents.items():
            index = self.reader.text_index(doc)
            for number in range(1, rec["pages"] + 1):
                segments.append((doc, number, total))
                chars = index.char_span(number) if index is not None else None
                size = chars[1] - chars[0] if chars else len(self._page_text(doc, number))
                total += len(f"=== [{doc} p.{number}] ===\n") + size + 1
        total = max(0, total - 1)  # pages are joined by one newline
        if total > grep_engine.CONTEXT_MAX_CHARS:
            return LargeContext(self.reader, segments, total)
        return "\n".join(f"=== [{doc} p.{n}] ===\n{self._page_text(doc, n)}" for doc, n, _ in segments)

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

    def FINAL(self, answer: Any) -> None:
        """End the run with this answer (a string citing pages like [doc p.N]; a dict or list when a JSON answer is asked for)."""
        raise FinalAnswer(_answer_text(answer))

    def FINAL_VAR(self, name: str) -> None:
        """End the run with the value of the variable called `name`."""
        if name not in self.namespace:
            raise NameError(f"FINAL_VAR: no variable named {name!r}")
        raise FinalAnswer(_answer_text(self.namespace[name]))

    def SHOW_VARS(self) -> dict[str, str]:
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


def _answer_text(answer: Any) -> str:
    """A dict or list travels as JSON (a structured answer); anything else as its text."""
    if isinstance(answer, (dict, list, tuple)):
        try:
            return json.dumps(answer, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            pass
    return str(answer)


HELPER_NAMES = ("ls", "tree", "read", "grep", "search", "docs", "context", "look", "llm_query", "llm_batch", "llm_query_batched",
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
