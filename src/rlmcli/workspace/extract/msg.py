"""Outlook .msg (optional extra `rlm[msg]`, the extract-msg package): a message is a page with
From, To, Cc, Date and Subject; attachments become documents of their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Attachment, Extracted, OutlineEntry
from rlmcli.workspace.extract.split import split_text


def extract_msg(path: Path) -> Extracted:
    if path.stat().st_size == 0:
        raise ExtractError("empty file (0 bytes)")
    try:
        import extract_msg
    except ImportError:
        raise ExtractError("Outlook .msg files need the optional extra: pip install 'rlmcli[msg]'") from None
    try:
        message: Any = extract_msg.openMsg(str(path))
    except Exception as exc:  # noqa: BLE001 - extract-msg raises many types for broken files
        raise ExtractError(f"not a valid Outlook .msg file ({type(exc).__name__}: {exc})") from None
    try:
        head = [f"{label}: {' '.join(str(value).split())}" for label, value in (
            ("From", message.sender), ("To", message.to), ("Cc", message.cc), ("Date", message.date),
            ("Subject", message.subject)) if value]
        attachments = []
        for att in getattr(message, "attachments", []) or []:
            data = getattr(att, "data", None)
            name = getattr(att, "longFilename", None) or getattr(att, "shortFilename", None) or "attachment"
            if isinstance(data, bytes) and data:
                attachments.append(Attachment(str(name).replace("/", "_"), data))
        if attachments:
            head.append(f"Attachments: {', '.join(a.name for a in attachments)}")
        body = str(message.body or "").replace("\r\n", "\n").strip()
    finally:
        message.close()
    result = Extracted(pages=split_text("\n".join(head) + "\n\n" + body + "\n"), extractor="extract-msg",
                       attachments=attachments)
    subject = str(message.subject or "").strip()
    if subject:
        result.metadata["title"] = subject
        result.outline = [OutlineEntry(1, 1, subject)]
    return result


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    from rlmcli.workspace.extract.files import on_path

    return on_path(extract_msg, path, data, ".msg")
