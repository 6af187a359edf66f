"""Messages between the parent and the sandbox child: JSON frames (rlmcli/framing.py) over dedicated pipes.

JSON, never pickle: the parent must not deserialize objects chosen by model-written code. Model
code can reach the child's end of the pipe, so everything the parent reads is untrusted: the
declared size is checked before anything is allocated, a frame that starts must finish within
FRAME_SECONDS, nesting too deep for the decoder is a breach like any other malformed frame, and
so is text that is not valid Unicode (bytes that are not UTF-8, or a `\ud800` escape: valid
JSON that decodes to a lone surrogate no UTF-8 writer accepts). What we send never holds one
(replaced by '?'), and a reply the other side does not read within FRAME_SECONDS is a breach.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rlmcli import framing

MAX_MESSAGE = 16 * 1024 * 1024  # a bigger frame from the child is a protocol breach
FRAME_SECONDS = 5.0  # once its header has arrived, a frame's body must follow within this

# The other side broke the protocol: a malformed, oversized, stalled or mistyped frame.
ProtocolError = framing.FrameError


def _dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8", errors="replace")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _valid_text(value: Any) -> bool:
    """No lone surrogate in any string (json pairs escaped surrogates; what is left is lone)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_valid_text(k) and _valid_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_valid_text(v) for v in value)
    return True


def _loads(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("malformed frame: not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"malformed frame: {type(exc).__name__}: {str(exc)[:100]}") from None
    if not isinstance(message, dict):
        raise ProtocolError("malformed frame: not an object")
    try:
        valid = not _SURROGATE_ESCAPE.search(body) or _valid_text(message)
    except RecursionError:
        valid = False
    if not valid:
        raise ProtocolError("malformed frame: text that is not valid Unicode (a lone surrogate)")
    return message


JSON = framing.Codec(_dumps, _loads)


def send(fd: int, message: dict[str, Any], deadline: float | None = None) -> None:
    """Write one message. With `deadline` (monotonic; `fd` must be non-blocking), a reader that
    stops reading is a ProtocolError instead of a write that blocks for ever."""
    framing.write_frame(fd, message, JSON, deadline)


def recv(fd: int, limit: int = MAX_MESSAGE, deadline: float | None = None) -> dict[str, Any]:
    """One message. With `deadline` (monotonic), waiting for the header times out (TimeoutError);
    a header whose body does not follow in FRAME_SECONDS is a ProtocolError."""
    message: dict[str, Any] = framing.read_frame(fd, JSON, limit, deadline, FRAME_SECONDS if deadline is not None else None)
    return message


def check(message: dict[str, Any], schema: dict[str, tuple[type | tuple[type, ...], ...]]) -> None:
    """Every field present with one of its allowed types (None allowed only where listed)."""
    for name, kinds in schema.items():
        value = message.get(name)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ProtocolError(f"malformed {message.get('type')!r} frame: field {name!r} is {type(value).__name__}")
