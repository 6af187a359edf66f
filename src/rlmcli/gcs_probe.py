"""Ask a Ray head, in its own protocol, whether it answers and whether it wants a token.

Ray's client retries an unreachable or silent head inside native code, where no deadline or
signal handler can reach it. So before `ray.init` we send the head's GCS one gRPC call
(`NodeInfoGcsService/GetClusterId`, empty request) over a plain socket with a deadline: HTTP/2
frames written by hand, since Ray's minimal install has no Python gRPC. A GCS that requires a
token answers `UNAUTHENTICATED` (gRPC status 16) without one; a GCS without authentication
answers either way, so the answer to a token-less call is what decides the mode.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

UNAUTHENTICATED = 16
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _SETTINGS, _GOAWAY = 0, 1, 4, 7
_END_STREAM, _ACK = 0x1, 0x1


class ProbeError(Exception):
    """The head could not be asked: `reason` is one line for the user."""


@dataclass
class Answer:
    status: int  # gRPC status of the call: 0 OK, 16 UNAUTHENTICATED, ...
    message: str = ""


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(name: str, value: str) -> bytes:
    """An HPACK header field, literal without indexing, neither part Huffman-coded."""
    out = b"\x00"
    for part in (name.encode(), value.encode()):
        out += _hpack_int(len(part), 7) + part
    return out


def _hpack_int(value: int, bits: int) -> bytes:
    limit = (1 << bits) - 1
    if value < limit:
        return bytes([value])
    out, value = [limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def _grpc_status(block: bytes) -> tuple[int | None, str]:
    """grpc-status and grpc-message from a trailer block, when sent as plain literals (as gRPC's
    C++ core does); (None, "") when they are coded in a way this small reader does not decode."""
    status: int | None = None
    message = ""
    for name in (b"grpc-status", b"grpc-message"):
        at = block.find(name)
        start = at + len(name)
        if at < 0 or start >= len(block) or block[start] & 0x80:  # absent, or a Huffman-coded value
            continue
        size = block[start] & 0x7F
        value = block[start + 1:start + 1 + size].decode("latin-1")
        if name == b"grpc-status" and value.isdigit():
            status = int(value)
        elif name == b"grpc-message":
            message = value
    return status, message


def ask(host: str, port: int, token: str | None, timeout: float) -> Answer:
    """One GetClusterId call; raises ProbeError when the port is closed, silent or not gRPC."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ProbeError("timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))) from None
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/ray.rpc.NodeInfoGcsService/GetClusterId"),
               (":authority", f"{host}:{port}"), ("content-type", "application/grpc"), ("te", "trailers")]
    if token:
        headers.append(("authorization", f"Bearer {token}"))
    request = (_PREFACE + _frame(_SETTINGS, 0, 0, b"")
               + _frame(_HEADERS, 0x4, 1, b"".join(_literal(n, v) for n, v in headers))  # END_HEADERS
               + _frame(_DATA, _END_STREAM, 1, b"\x00\x00\x00\x00\x00"))  # an empty, uncompressed message
    got_data = False
    buf = b""
    with sock:
        try:
            sock.sendall(request)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    raise ProbeError("it closed the connection without answering as Ray's GCS")
                buf += chunk
                if buf.startswith(b"HTTP/"):
                    raise ProbeError("it answered in HTTP/1, not as Ray's GCS (gRPC)")
                while len(buf) >= 9:
                    length = int.from_bytes(buf[:3], "big")
                    if length > 1 << 24 or len(buf) < 9 + length:
                        break
                    kind, flags = buf[3], buf[4]
                    stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                    payload, buf = buf[9:9 + length], buf[9 + length:]
                    if kind == _SETTINGS and not flags & _ACK:
                        sock.sendall(_frame(_SETTINGS, _ACK, 0, b""))
                    elif kind == _GOAWAY and stream == 0 and not got_data:
                        raise ProbeError("it refused the call (HTTP/2 GOAWAY) instead of answering as Ray's GCS")
                    elif stream == 1 and kind == _DATA and payload:
                        got_data = True
                    if stream == 1 and kind == _HEADERS and flags & _END_STREAM:
                        status, message = _grpc_status(payload)
                        if status is None:
                            status = 0 if got_data else 2  # a reply body means the call succeeded
                        return Answer(status, message)
        except TimeoutError:
            raise ProbeError(f"it accepted the connection but did not answer as Ray's GCS within {timeout:.0f} s") \
                from None
        except OSError as exc:
            raise ProbeError(f"the connection failed while asking it ({exc.strerror or exc})") from None
