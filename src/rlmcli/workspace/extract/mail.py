"""EML and MBOX: a message is a page (or several, when long) that opens with its From, To, Cc,
Date and Subject; the text part is preferred over the HTML one; attachments are returned to be
ingested as documents of their own (a PDF or DOCX inside a mail included). An mbox is read one
message at a time."""

from __future__ import annotations

import email
import email.policy
import mailbox
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from rlmcli.errors import ExtractError
from rlmcli.workspace.extract import Attachment, Extracted, OutlineEntry
from rlmcli.workspace.extract.split import split_text

HEADERS = ("From", "To", "Cc", "Date", "Subject")
MAX_ATTACHMENT_BYTES = 200 << 20  # in all, per mail file: more is named, not kept


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset, a broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload or "")
    if part.get_content_subtype() == "html":
        from rlmcli.workspace.extract.html import html_to_text

        content, _ = html_to_text(str(content))
    return str(content).replace("\r\n", "\n").strip() + "\n"


def _attachments(message: EmailMessage) -> Iterator[tuple[str, bytes]]:
    for part in message.iter_attachments():
        name = part.get_filename() or f"attachment.{part.get_content_subtype()}"
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and payload:
            yield name.replace("/", "_"), payload
        elif part.get_content_type() == "message/rfc822":
            inner = part.get_payload(0) if part.is_multipart() else None
            if inner is not None and not isinstance(inner, str):
                yield f"{name}.eml" if not name.endswith(".eml") else name, inner.as_bytes()


def _message_pages(message: EmailMessage, number: int | None) -> list[str]:
    head = [f"{h}: {' '.join(str(message.get(h, '')).split())}" for h in HEADERS if message.get(h)]
    names = [n for n, _ in _attachments(message)]
    if names:
        head.append(f"Attachments: {', '.join(names)}")
    title = f"# Message {number}\n" if number is not None else ""
    return split_text(title + "\n".join(head) + "\n\n" + _body(message))


class _Collected:
    def __init__(self) -> None:
        self.items: list[Attachment] = []
        self.bytes = 0
        self.dropped: list[str] = []

    def add(self, message: EmailMessage, prefix: str) -> None:
        for name, data in _attachments(message):
            if self.bytes + len(data) > MAX_ATTACHMENT_BYTES:
                self.dropped.append(name)
                continue
            self.bytes += len(data)
            self.items.append(Attachment(prefix + name, data))


def extract_eml(path: Path, data: bytes | None) -> Extracted:
    raw = data if data is not None else path.read_bytes()
    if not raw.strip():
        raise ExtractError("empty file (0 bytes)")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not any(message.get(h) for h in HEADERS) and not message.is_multipart():
        raise ExtractError("not an email: no From, To, Date or Subject header")
    collected = _Collected()
    collected.add(message, "")
    result = Extracted(pages=_message_pages(message, None), extractor="email", attachments=collected.items)
    subject = str(message.get("Subject", "")).strip()
    if subject:
        result.metadata["title"] = subject
        result.outline = [OutlineEntry(1, 1, subject)]
    if collected.dropped:
        result.warnings.append(f"attachments over {MAX_ATTACHMENT_BYTES >> 20} MB in all not ingested: "
                               f"{', '.join(collected.dropped)}")
    return result


def extract_mbox(path: Path, data: bytes | None) -> Extracted:
    if data is not None:
        from rlmcli.workspace.extract.files import as_file

        with as_file(data, ".mbox") as temp:
            result = extract_mbox(temp, None)
            result.pages = list(result.pages)  # read before the temporary file goes
            return result
    box = mailbox.mbox(str(path), factory=None, create=False)
    outline: list[OutlineEntry] = []
    collected = _Collected()
    result = Extracted(pages=[], extractor="mailbox", outline=outline, attachments=collected.items)

    def pages() -> Iterator[str]:
        count = 0
        page_number = 0
        try:
            for key in box.iterkeys():
                try:
                    raw = box.get_bytes(key)
                except (OSError, KeyError):
                    continue
                message: Any = email.message_from_bytes(raw, policy=email.policy.default)
                count += 1
                subject = " ".join(str(message.get("Subject", "")).split()) or f"Message {count}"
                outline.append(OutlineEntry(1, page_number + 1, subject))
                collected.add(message, f"message-{count}/")
                for page in _message_pages(message, count):
                    page_number += 1
                    yield page
        finally:
            box.close()
        if collected.dropped:
            result.warnings.append(f"attachments over {MAX_ATTACHMENT_BYTES >> 20} MB in all not ingested: "
                                   f"{len(collected.dropped)} files")
        if count == 0:
            raise ExtractError("no messages in this mbox")

    result.pages = pages()
    return result


def extract(path: Path, data: bytes | None, options: object, kind: str) -> Extracted:
    return extract_mbox(path, data) if kind == "mbox" else extract_eml(path, data)
