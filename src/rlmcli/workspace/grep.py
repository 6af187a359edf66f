"""grep over a workspace's text, and `context` when the text is too large to hold.

The byte-level engine behind the sandbox's `grep()` helper (and MCP's grep tool): each call reads
every document's text.txt in slices of whole pages, searches ASCII literals in the raw bytes and a
regex only on the pages that hold its required literal, and maps hits to pages through text.idx.
Standard library only: the sandbox imports it.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

from rlmcli.workspace.reader import TEXT, WorkspaceReader


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


