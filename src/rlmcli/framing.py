"""Length-prefixed frames over pipes: a 4-byte big-endian length, then the body.

Three protocols speak it, each with its own codec:

* the sandbox channel (`sandbox/protocol.py`, JSON): the child runs model code, so what the parent
  reads is hostile: a size cap before anything is allocated, deadlines for the header and the
  body, and the codec's own checks;
* the token counter's helper (`tokens.py`) and the PDF workers (`workspace/extract/pdf_workers.py`),
  marshal between a process and its own fork, which nothing else can write to.

Standard library only: the sandbox child imports this module too.
"""

from __future__ import annotations

import marshal
import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

HEADER = struct.Struct(">I")
LARGEST = (1 << 32) - 1  # what the header can declare


class FrameError(Exception):
    """The other side broke the framing: a frame over its cap, one that stopped arriving, a
    reader that stopped reading, or a body its codec refuses."""


class Codec(NamedTuple):  # (not a dataclass: the sandbox child does without that import)
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]  # raises FrameError (or ValueError) on a body it refuses


# marshal runs code-free but is not built for hostile input: only between a process and its own fork.
MARSHAL = Codec(marshal.dumps, marshal.loads)


def encode(obj: Any, codec: Codec) -> bytes:
    body = codec.dumps(obj)
    if len(body) > LARGEST:
        raise FrameError(f"a frame of {len(body):,} bytes is larger than a header can declare")
    return HEADER.pack(len(body)) + body


def write_all(fd: int, data: bytes | memoryview, deadline: float | None = None) -> None:
    """Write every byte. With `deadline` (time.monotonic(); `fd` must be non-blocking), a reader
    that stops reading is a FrameError instead of a write that blocks for ever."""
    view = memoryview(data)
    while view:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise FrameError(f"the other side stopped reading ({len(view):,} bytes of a reply unread)")
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def write_frame(fd: int, obj: Any, codec: Codec, deadline: float | None = None) -> None:
    write_all(fd, encode(obj, codec), deadline)


def write_some(fd: int, data: bytes) -> bytes:
    """Write what the pipe takes now without blocking; return the rest."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)
    return bytes(view)


def read_exact(fd: int, n: int, deadline: float | None = None) -> bytes:
    """`n` bytes: EOFError when the other side closes first, TimeoutError past `deadline`."""
    chunks = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, codec: Codec, max_bytes: int = LARGEST, deadline: float | None = None,
               body_seconds: float | None = None) -> Any:
    """One frame, decoded. The declared size is checked against `max_bytes` before anything is
    read; waiting for the header past `deadline` is a TimeoutError; once the header is in, a body
    that does not follow within `body_seconds` is a FrameError. EOFError when the pipe closes."""
    (length,) = HEADER.unpack(read_exact(fd, HEADER.size, deadline))
    if length > max_bytes:
        raise FrameError(f"a frame of {length:,} bytes exceeds the {max_bytes:,}-byte limit")
    try:
        body = read_exact(fd, length, None if body_seconds is None else time.monotonic() + body_seconds)
    except TimeoutError:
        raise FrameError(f"a frame stopped arriving (declared {length:,} bytes)") from None
    return codec.loads(body)


class FrameReader:
    """Frames from a pipe read as its data comes (a select loop over several pipes): `feed` what
    os.read returned and take back the frames it completed."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self.buffer += data
        out, at = [], 0
        while len(self.buffer) - at >= HEADER.size:
            (length,) = HEADER.unpack_from(self.buffer, at)
            end = at + HEADER.size + length
            if len(self.buffer) < end:
                break
            out.append(self.codec.loads(bytes(self.buffer[at + HEADER.size:end])))
            at = end
        del self.buffer[:at]
        return out

    @property
    def partial(self) -> bool:
        """Part of a frame is waiting for the rest."""
        return bool(self.buffer)
