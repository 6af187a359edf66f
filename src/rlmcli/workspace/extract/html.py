"""HTML: visible text only, headings kept as `#` lines."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Extracted
from rlmcli.workspace.extract.split import markdown_outline, split_text
from rlmcli.workspace.extract.text import decode, read_bytes

_HIDDEN = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object"}
_BLOCK = {
    "p", "div", "section", "article", "header", "footer", "nav", "aside", "main", "ul", "ol",
    "table", "tr", "blockquote", "pre", "form", "fieldset", "figure", "figcaption", "dl", "dt",
    "dd", "hr", "address", "details", "summary", "caption", "body", "html",
}
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr"}
_META_CHARSET = re.compile(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_\-]+)", re.I)


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0
        self.pre = 0
        self.title: list[str] = []
        self.in_title = False
        self.cell = 0

    def _newline(self) -> None:
        if self.out and not self.out[-1].endswith("\n"):
            self.out.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            if tag not in _VOID:
                self.hidden += 1
            return
        if tag == "title":
            self.in_title = True
        if self.hidden:
            return
        if tag == "br":
            self.out.append("\n")
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._newline()
            self.out.append("#" * int(tag[1]) + " ")
        elif tag == "li":
            self._newline()
            self.out.append("- ")
        elif tag in ("td", "th"):
            if self.cell:
                self.out.append(" | ")
            self.cell += 1
        elif tag == "tr":
            self._newline()
            self.cell = 0
        elif tag in _BLOCK:
            self._newline()
        if tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
            return
        if tag == "title":
            self.in_title = False
        if self.hidden:
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if (len(tag) == 2 and tag[0] == "h" and tag[1] in "123456") or tag in _BLOCK or tag == "li":
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if self.hidden:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            if self.out and self.out[-1].endswith(("\n", " ")):
                data = data.lstrip()
        if data:
            self.out.append(data)


def html_to_text(markup: str) -> tuple[str, str]:
    """Visible text and the document title."""
    parser = _Visible()
    parser.feed(markup)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.out).splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
    return text, " ".join("".join(parser.title).split())


def extract_html(path: Path, data: bytes | None = None) -> Extracted:
    raw = read_bytes(path, data)
    declared = _META_CHARSET.search(raw[:4096])
    warning = None
    if declared:
        try:
            markup = raw.decode(declared.group(1).decode("ascii"), errors="replace")
        except LookupError:
            markup, warning = decode(raw)
    else:
        markup, warning = decode(raw)
    text, title = html_to_text(markup)
    if not text.strip():
        raise ExtractError("no visible text in this HTML page")
    pages = split_text(text)
    result = Extracted(pages=pages, extractor="html.parser", outline=markdown_outline(pages))
    if title:
        result.metadata["title"] = title
    if warning:
        result.warnings.append(warning)
    return result


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    return extract_html(path, data)
