"""EPUB: chapters in spine order, each starting a page; the outline lists chapters by title.
XML is parsed with defusedxml; DRM-encrypted books are named as such."""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path
from typing import Any

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Extracted, OutlineEntry
from rlmcli.workspace.extract.split import split_text

_OPF = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_FONT_OBFUSCATION = ("http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC")


def _xml(archive: zipfile.ZipFile, name: str) -> Any:
    from defusedxml import ElementTree

    try:
        return ElementTree.fromstring(archive.read(name))
    except KeyError:
        raise ExtractError(f"not a valid EPUB file (missing {name})") from None
    except Exception as exc:  # noqa: BLE001 - defusedxml refuses entities; a broken file fails to parse
        raise ExtractError(f"not a valid EPUB file ({name}: {type(exc).__name__}: {exc})") from None


def _refuse_drm(archive: zipfile.ZipFile) -> None:
    if "META-INF/encryption.xml" not in archive.namelist():
        return
    root = _xml(archive, "META-INF/encryption.xml")
    for method in root.iter("{http://www.w3.org/2001/04/xmlenc#}EncryptionMethod"):
        if method.get("Algorithm") not in _FONT_OBFUSCATION:  # obfuscated fonts are not DRM
            raise ExtractError("DRM-protected EPUB: its chapters are encrypted")


def extract_epub(path: Path) -> Extracted:
    if path.stat().st_size == 0:
        raise ExtractError("empty file (0 bytes)")
    from rlmcli.workspace.extract.html import html_to_text
    from rlmcli.workspace.extract.safezip import check_zip
    from rlmcli.workspace.extract.text import decode

    check_zip(path, "EPUB")
    with zipfile.ZipFile(path) as archive:
        _refuse_drm(archive)
        container = _xml(archive, "META-INF/container.xml")
        rootfile = next((e.get("full-path") for e in container.iter() if e.tag.endswith("rootfile")), None)
        if not rootfile:
            raise ExtractError("not a valid EPUB file (no rootfile in META-INF/container.xml)")
        opf = _xml(archive, rootfile)
        base = posixpath.dirname(rootfile)
        items = {i.get("id"): i.get("href") for i in opf.iter(f"{_OPF}item")}
        spine = [items.get(r.get("idref")) for r in opf.iter(f"{_OPF}itemref")]
        pages: list[str] = []
        outline: list[OutlineEntry] = []
        for href in spine:
            if not href:
                continue
            name = posixpath.normpath(posixpath.join(base, href.split("#")[0]))
            try:
                markup, _ = decode(archive.read(name))
            except KeyError:
                continue
            text, title = html_to_text(markup)
            if not text.strip():
                continue
            heading = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "")
            outline.append(OutlineEntry(1, len(pages) + 1, heading or title or posixpath.basename(name)))
            pages.extend(split_text(text))
    if not pages:
        raise ExtractError("no text in this EPUB")
    result = Extracted(pages=pages, extractor="epub", outline=outline)
    for key, tag in (("title", "title"), ("author", "creator"), ("language", "language")):
        value = next((e.text for e in opf.iter(f"{_DC}{tag}") if e.text), None)
        if value:
            result.metadata[key] = value.strip()
    return result


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    from rlmcli.workspace.extract.files import on_path

    return on_path(extract_epub, path, data, ".epub")
