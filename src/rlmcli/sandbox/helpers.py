"""The helpers model code gets in its namespace. Their docstrings are the single source of the
system prompt's helper reference (`helper_reference()`), so keep them short and exact.

Runs inside the sandbox child: only the standard library, reading the workspace (the cwd).
"""

from __future__ import annotations

import json
import os
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from rlmcli.workspace.query import DocMatch, Searcher
from rlmcli.workspace.reader import TEXT, WorkspaceReader


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


class DocList(list):  # type: ignore[type-arg]
    def __repr__(self) -> str:
        return "\n".join(repr(d) for d in self) if self else "(no documents)"

    __str__ = __repr__


class Passages(list):  # type: ignore[type-arg]
    def __repr__(self) -> str:
        return "\n\n".join(repr(p) for p in self) if self else "(no passages found)"

    __str__ = __repr__


# The only non-ASCII letters Python's re.I equates with ASCII ones: İ ı (i), K (Kelvin, k), ſ (s).
_FOLDS_TO_ASCII = re.compile("[\u0130\u0131\u212a\u017f]")


def _folds_to_ascii(data: bytes) -> bool:
    """Whether UTF-8 bytes hold one of those letters: a one-byte memchr first (fast, and the lead
    bytes are rare in most text), the exact sequence only after it."""
    return ((data.find(b"\xc4") >= 0 and (b"\xc4\xb0" in data or b"\xc4\xb1" in data))
            or (data.find(b"\xc5") >= 0 and b"\xc5\xbf" in data)
            or (data.find(b"\xaa") >= 0 and b"\xe2\x84\xaa" in data))

GREP_CHUNK = 16 << 20  # bytes of whole pages read, decoded and searched at once
CONTEXT_MAX_CHARS = 64_000_000  # above this `context` is a LargeContext, not a str
READ_MAX_CHARS = 8_000_000  # one read() of many pages; a single page is always returned whole
_META = re.compile(r"[\\.^$*+?{}\[\]|()]")


class Scanner:
    """grep's search over the workspace: each document's text.txt (its pages end to end) read a
    slice of whole pages at a time, so memory stays bounded whatever the corpus size. Documents
    from before text.txt existed are read page by page."""

    def __init__(self, reader: WorkspaceReader) -> None:
        self.reader = reader
        self._fold_cache: dict[tuple[str, int, int, int], bool] = {}

    def compile(self, pattern: str, ignore_case: bool) -> tuple[re.Pattern[Any], bool]:
        """(compiled pattern, on bytes?). An ASCII literal is matched on the raw bytes (lower-cased
        for ignore_case): no decoding at all. Anything else is matched on decoded text."""
        literal = not _META.search(pattern)
        if literal and pattern.isascii():
            needle = pattern.lower() if ignore_case else pattern
            return re.compile(re.escape(needle.encode())), True
        return re.compile(pattern, re.M | (re.I if ignore_case else 0)), False  # ^ and $ at each line

    @staticmethod
    def required(pattern: str, ignore_case: bool) -> tuple[bytes, bool] | None:
        """(bytes every match must contain, compare lower-cased?) for a regex, or None.

        Python's `re` with IGNORECASE cannot skip ahead to a literal prefix and runs ~12x slower
        than a plain bytes search; so pages without a run of plain characters the pattern
        requires (at its top level: not inside an alternative or an optional part) are skipped
        before any decoding. The needle is ASCII; case-insensitively it is matched against
        lower-cased bytes (see `_FOLDS_TO_ASCII` for the letters that needs care with)."""
        try:
            from re import _parser as parser  # type: ignore[attr-defined]  # Python 3.11+
        except ImportError:  # pragma: no cover - Python 3.10
            import sre_parse as parser
        try:
            parsed = parser.parse(pattern, re.I if ignore_case else 0)
        except Exception:  # noqa: BLE001 - the real compile reports a bad pattern
            return None
        ignore_case = ignore_case or bool(parsed.state.flags & re.I)  # an inline (?i) too
        items = list(parsed)
        best, run = "", ""
        for op, arg in [*items, (None, None)]:
            ch = chr(arg) if str(op) == "LITERAL" else ""
            usable = ch.isascii() and ch != ""
            if usable:
                run += ch
            else:
                best, run = max(best, run, key=len), ""
        if len(best) < 3:
            return None
        return (best.lower() if ignore_case else best).encode(), ignore_case

    def scan(self, doc: str, rx: re.Pattern[Any], on_bytes: bool, lower: bool,
             needle: tuple[bytes, bool] | None = None) -> Iterator[tuple[int, int, str]]:
        """(page, line, text of the line) of each matching line of `doc`, in order; with a
        `needle` (see `required`), only pages that contain it are decoded and searched."""
        folds = (on_bytes and lower) or (needle is not None and needle[1])
        # A case-folding bytes search cannot see the few non-ASCII letters that `re.I` matches to
        # ASCII ones; a slice holding any of them is searched the slow, exact way.
        literal = re.sub(rb"\\(.)", rb"\1", rx.pattern).decode() if on_bytes else ""  # undo re.escape
        exact = re.compile(re.escape(literal), re.I | re.M) if on_bytes else rx
        index = self.reader.text_index(doc)
        if index is None:
            for number in range(1, self.reader.documents[doc]["pages"] + 1):
                text = self.reader.read_page(doc, number)
                if on_bytes and not (folds and _FOLDS_TO_ASCII.search(text)):
                    yield from _scan(text.encode(), [0], number, rx, lower)
                else:
                    yield from _scan(text, [0], number, exact, False)
            return
        path = self.reader.path("docs", doc, TEXT)
        with open(path, "rb") as fh:
            version = (path, os.fstat(fh.fileno()).st_mtime_ns)
            first = 1
            while first <= index.pages:
                last = first
                while last < index.pages and index.bytes[last] - index.bytes[first - 1] < GREP_CHUNK:
                    last += 1
                begin, end = index.bytes[first - 1], index.byte_span(last)[1]
                fh.seek(begin)
                data = fh.read(end - begin)
                plain = not (folds and self._folds(version, begin, data))
                if needle is not None and plain:
                    yield from self._candidates(data, begin, first, last, index, rx, needle)
                elif on_bytes and plain:
                    starts = [index.bytes[i] - begin for i in range(first - 1, last)]
                    yield from _scan(data, starts, first, rx, lower)
                else:
                    base = index.chars[first - 1]
                    starts = [index.chars[i] - base for i in range(first - 1, last)]
                    yield from _scan(data.decode("utf-8", "replace"), starts, first, exact, False)
                first = last + 1


    def _folds(self, version: tuple[str, int], begin: int, data: bytes) -> bool:
        """`_folds_to_ascii` of a slice, remembered for the next grep (a workspace's text files
        never change in place: a new version of a document is a new file)."""
        key = (*version, begin, len(data))
        if key not in self._fold_cache:
            self._fold_cache[key] = _folds_to_ascii(data)
        return self._fold_cache[key]

    @staticmethod
    def _candidates(data: bytes, begin: int, first: int, last: int, index: Any, rx: re.Pattern[Any],
                    needle: tuple[bytes, bool]) -> Iterator[tuple[int, int, str]]:
        """The regex over only the pages of a slice that contain the needle."""
        word, fold = needle
        hay = data.lower() if fold else data
        starts = [index.bytes[i] - begin for i in range(first - 1, last)]
        pos = hay.find(word)
        while pos != -1:
            i = bisect_right(starts, pos) - 1
            page = first + i
            lo, hi = (x - begin for x in index.byte_span(page))
            yield from _scan(data[lo:hi].decode("utf-8", "replace"), [0], page, rx, False)
            pos = hay.find(word, max(hi, pos + 1))


def _scan(chunk: Any, starts: list[int], first_page: int, rx: re.Pattern[Any], lower: bool) -> Iterator[tuple[int, int, str]]:
    """Matches in `chunk` (pages starting at `starts`, the first being `first_page`), one per line."""
    newline = b"\n" if isinstance(chunk, bytes) else "\n"
    haystack = chunk.lower() if lower else chunk
    if len(haystack) != len(chunk):  # lower() changed lengths (rare scripts): case-fold with re.I
        haystack, rx = chunk, re.compile(rx.pattern, rx.flags | re.I)
    pos = 0
    while (m := rx.search(haystack, pos)) is not None:
        at = m.start()
        i = bisect_right(starts, at) - 1
        page_start = starts[i]
        before = chunk.rfind(newline, page_start, at)
        line_start = before + 1 if before >= 0 else page_start
        line_end = chunk.find(newline, at)
        if line_end == -1:
            line_end = len(chunk)
        line_no = chunk.count(newline, page_start, line_start) + 1
        text = chunk[line_start:line_end]
        yield first_page + i, line_no, text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        pos = max(line_end + 1, m.end() if m.end() > at else at + 1)


class LargeContext:
    """`context` for a workspace too large to hold as one string: its length and slices work
    (`len(context)`, `context[a:b]`), read from the page files; anything else says what to use."""

    def __init__(self, reader: WorkspaceReader, segments: list[tuple[str, int, int]], total: int) -> None:
        self.reader, self.total = reader, total
        self.segments = segments  # (doc, page, offset of its header in context)
        self.offsets = [o for _, _, o in segments]

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, key: int | slice) -> str:
        if isinstance(key, int):
            index = key + self.total if key < 0 else key
            if not 0 <= index < self.total:
                raise IndexError("context index out of range")
            return self[index:index + 1]
        start, stop, step = key.indices(self.total)
        if step != 1:
            raise ValueError("context slices take no step")
        if stop - start > CONTEXT_MAX_CHARS:
            raise MemoryError(self._advice(f"a slice of {stop - start:,} characters is more than it can hold"))
        out, i = [], max(0, bisect_right(self.offsets, start) - 1)
        while i < len(self.segments) and self.offsets[i] < stop:
            doc, page, offset = self.segments[i]
            piece = f"=== [{doc} p.{page}] ===\n{self.reader.read_page(doc, page)}\n"
            out.append(piece[max(0, start - offset):stop - offset])
            i += 1
        return "".join(out)

    def _advice(self, what: str) -> str:
        return (f"context holds {self.total:,} characters, too many to hold in memory, and {what}. "
                "Use grep(pattern), search(query) or read(doc, page), or slice it: context[a:b].")

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(self._advice(f"context.{name} would need all of it"))

    def __iter__(self) -> Iterator[str]:
        raise TypeError(self._advice("iterating over it would read all of it"))

    def __contains__(self, item: object) -> bool:
        raise TypeError(self._advice("`in` would read all of it; grep() finds text and says where"))

    def __repr__(self) -> str:
        return (f"<context: {self.total:,} characters in {len(self.segments):,} pages, too large to hold; "
                "len(context) and context[a:b] work; use grep(), search() and read() to find text>")

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
        if total > CONTEXT_MAX_CHARS:
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

    def FINAL(self, answer: Any) -> None:  # noqa: N802 - the RLM convention
        """End the run with this answer (a string citing pages like [doc p.N]; a dict or list when a JSON answer is asked for)."""
        raise FinalAnswer(_answer_text(answer))

    def FINAL_VAR(self, name: str) -> None:  # noqa: N802
        """End the run with the value of the variable called `name`."""
        if name not in self.namespace:
            raise NameError(f"FINAL_VAR: no variable named {name!r}")
        raise FinalAnswer(_answer_text(self.namespace[name]))

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
