"""Messages between the parent and the sandbox child: 4-byte length + JSON, over dedicated pipes.

JSON, never pickle: the parent must not deserialize objects chosen by model-written code.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

MAX_MESSAGE = 64 * 1024 * 1024  # a bigger frame from the child is treated as a protocol breach


class ProtocolError(Exception):
    pass


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def send(fd: int, message: dict[str, Any]) -> None:
    data = json.dumps(message, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
    frame = struct.pack(">I", len(data)) + data
    view = memoryview(frame)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def recv(fd: int, limit: int = MAX_MESSAGE) -> dict[str, Any]:
    (length,) = struct.unpack(">I", _read_exact(fd, 4))
    if length > limit:
        raise ProtocolError(f"message of {length} bytes exceeds the {limit}-byte limit")
    try:
        message = json.loads(_read_exact(fd, length).decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise ProtocolError(f"malformed message: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("malformed message: not an object")
    return message
