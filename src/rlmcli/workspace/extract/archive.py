"""ZIP archives: each member is ingested as a document of its own, named `archive.zip/member`,
the way a mail's attachments are; the archive's own page lists its members.

The archive is checked before anything is inflated, with the bounds of every other zip
(safezip.py: per member, ratio, in all, member count). Members are read into memory to be
ingested, at most MAX_MEMBER_BYTES in all per archive; the rest are named in a warning. Members
are treated like files found in a folder: binary ones are skipped quietly, unreadable ones are
listed without failing the ingest. Encrypted members cannot be read and are named. An archive
in an archive is opened too, down to the attachment depth limit (build.MAX_ATTACHMENT_DEPTH).
"""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Attachment, Extracted, Options
from rlmcli.workspace.extract.safezip import check_zip
from rlmcli.workspace.extract.split import split_text

MAX_MEMBER_BYTES = 200 << 20  # held at once for one archive, as for a mail's attachments
SKIP_PARTS = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


def _clean(name: str) -> str | None:
    """A member's name as a document name: no leading '/', no '..', no '.'; None for a folder or
    the bookkeeping files archivers add."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts or name.endswith("/") or any(p in SKIP_PARTS or p.startswith("._") for p in parts):
        return None
    return posixpath.join(*parts)


def extract(path: Path, data: bytes | None, options: Options, kind: str) -> Extracted:
    if data is not None:
        from rlmcli.workspace.extract.files import as_file

        with as_file(data, ".zip") as temp:
            return extract(temp, None, options, kind)
    check_zip(path, "ZIP")
    attachments: list[Attachment] = []
    lines: list[str] = []
    encrypted: list[str] = []
    dropped: list[str] = []
    held = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = _clean(info.filename)
                if name is None or info.is_dir():
                    continue
                lines.append(f"- {name} ({info.file_size:,} bytes)")
                if info.flag_bits & 0x1:
                    encrypted.append(name)
                    continue
                if info.file_size == 0:
                    continue
                if held + info.file_size > MAX_MEMBER_BYTES:
                    dropped.append(name)
                    continue
                held += info.file_size
                attachments.append(Attachment(name, archive.read(info)))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise ExtractError(f"not a valid ZIP file ({type(exc).__name__}: {exc})") from None
    if not lines:
        raise ExtractError("an empty ZIP archive: no files in it")
    listing = (f"# {path.name}\n\nA ZIP archive of {len(lines)} files; each readable one is a document of its "
               f"own, named {path.name}/<file>:\n" + "\n".join(lines) + "\n")
    result = Extracted(pages=split_text(listing), extractor="zipfile", attachments=attachments)
    if encrypted:
        result.warnings.append(f"{len(encrypted)} encrypted member(s) cannot be read: {', '.join(encrypted[:10])}")
    if dropped:
        result.warnings.append(f"members over {MAX_MEMBER_BYTES >> 20} MB in all not ingested: "
                               f"{', '.join(dropped[:10])}{' and more' if len(dropped) > 10 else ''} "
                               "(unzip the archive and ingest its folder)")
    return result
