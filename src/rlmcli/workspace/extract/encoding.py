"""Which encoding a text file is in: a BOM, else UTF-8, else detected (chardet 7: byte-bigram models
per language, 99 encodings), with three checks of our own:

* a file that is mostly UTF-8 with some legacy bytes (exports and logs glued together) is
  decoded as UTF-8, and only the bytes that are not UTF-8 in the legacy encoding detected from
  the lines that hold them (an error handler, so streams and CSV do the same);
* a single-byte Cyrillic, Greek, Hebrew or Arabic encoding is not believed for text whose
  letters are mostly ASCII (in those scripts nearly every letter is a high byte): the choice is
  made again among Latin encodings, else Windows-1252;
* the warning names the codec chosen, as Python calls it (`not UTF-8: decoded as cp1250`).

Detection reads at most SNIFF_BYTES; speeds on a 300 MB file are in docs/encodings.md.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from dataclasses import dataclass

SNIFF_BYTES = 1 << 20
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Single-byte encodings of non-Latin scripts: text in them is mostly high bytes.
NON_LATIN = {"cp1251", "koi8-r", "koi8-u", "mac-cyrillic", "iso8859-5", "cp866", "cp855", "kz1048", "ptcp154",
             "cp1253", "iso8859-7", "mac-greek", "cp737", "cp869", "cp1255", "iso8859-8", "cp862", "cp1256",
             "iso8859-6", "cp864", "cp720", "tis-620", "cp874", "iso8859-11", "cp1258", "cp424", "cp1125"}
LATIN = ["cp1252", "iso8859-15", "cp1250", "iso8859-2", "cp1257", "iso8859-13", "cp1254", "iso8859-9",
         "iso8859-16", "iso8859-4", "iso8859-3", "mac-roman", "cp850", "cp852", "cp437"]
MIXED_MIN = 3  # valid multi-byte UTF-8 characters that make a non-UTF-8 file "mixed", not legacy
_LETTERS = re.compile(rb"[A-Za-z]")


@dataclass(frozen=True)
class Decoding:
    codec: str
    errors: str = "replace"  # for a mixed file: the handler that decodes non-UTF-8 bytes as `legacy`
    warning: str | None = None


def sniff(sample: bytes, partial: bool = False) -> Decoding:
    """How to decode a file from `sample` (its first bytes, or all of it). `partial`: the sample
    may end inside a character."""
    for bom, codec in BOMS:
        if sample.startswith(bom):
            return Decoding(codec)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=not partial)
        return Decoding("utf-8")
    except UnicodeDecodeError:
        pass
    valid, bad_lines = _utf8_census(sample)
    if valid >= MIXED_MIN:
        legacy = detect(b"\n".join(bad_lines))
        return Decoding("utf-8", fallback_handler(legacy),
                        f"mixed encodings: mostly UTF-8; {len(bad_lines):,} lines that are not were decoded as {legacy}")
    codec = detect(sample)
    return Decoding(codec, "replace", f"not UTF-8: decoded as {codec}" + (" (judged from the first MB)" if partial else ""))


def decode(data: bytes) -> tuple[str, str | None]:
    """A whole file's text and, when it was not (all) UTF-8, a warning naming the encoding chosen."""
    how = sniff(data[:8 << 20])
    return data.decode(how.codec, errors=how.errors), how.warning


def detect(data: bytes) -> str:
    """A legacy encoding for bytes that are not UTF-8, as Python names its codec."""
    import chardet

    found = chardet.detect(data, max_bytes=SNIFF_BYTES)["encoding"]
    codec = _python_name(found) or "cp1252"
    if codec in NON_LATIN and _mostly_ascii_letters(data):
        found = chardet.detect(data, max_bytes=SNIFF_BYTES, include_encodings=LATIN)["encoding"]
        codec = _python_name(found) or "cp1252"
    return codec


def _python_name(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _mostly_ascii_letters(data: bytes) -> bool:
    """High bytes are under 30 % of the letters: a Latin script with accents, not Cyrillic or Greek."""
    high = len(data) - len(data.translate(None, bytes(range(0x80, 0x100))))
    ascii_letters = len(_LETTERS.findall(data))
    return high < 0.3 * (high + ascii_letters)


def _utf8_census(sample: bytes) -> tuple[int, list[bytes]]:
    """(multi-byte UTF-8 characters among the lines that decode, the lines that do not)."""
    valid, bad = 0, []
    for line in sample.split(b"\n"):
        if line.isascii():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(line)
            continue
        valid += sum(1 for ch in text if ord(ch) > 127)
    return valid, bad


FALLBACK_USES: Counter[str] = Counter()  # handler name -> byte runs it decoded (for a stream's late warning)


def fallback_handler(legacy: str) -> str:
    """The name of a codecs error handler that decodes the bytes UTF-8 refused as `legacy`."""
    name = f"rlm-utf8-else-{legacy}"
    try:
        codecs.lookup_error(name)
    except LookupError:
        def handler(exc: UnicodeError) -> tuple[str, int]:
            if not isinstance(exc, UnicodeDecodeError):
                raise exc
            FALLBACK_USES[name] += 1
            return bytes(exc.object[exc.start:exc.end]).decode(legacy, errors="replace"), exc.end
        codecs.register_error(name, handler)
    return name
