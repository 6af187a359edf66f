"""The one framing module under the three pipe protocols (sandbox channel, token helper, PDF
workers), over real pipes. The sandbox's hostile frames end to end are in tests/hostile/test_channel.py."""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from rlmcli import framing
from rlmcli.sandbox import protocol


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.mark.parametrize("codec", [framing.MARSHAL, protocol.JSON], ids=["marshal", "json"])
def test_frames_cross_a_pipe_whole_and_in_order(pipe: tuple[int, int], codec: framing.Codec) -> None:
    r, w = pipe
    messages = [{"type": "result", "stdout": "é" * n, "n": n} for n in (0, 1, 70_000)]
    writer = threading.Thread(target=lambda: [framing.write_frame(w, m, codec) for m in messages])
    writer.start()  # the last one is larger than the pipe holds: it needs a reader
    got = [framing.read_frame(r, codec) for _ in messages]
    writer.join()
    assert got == messages
    os.close(w)
    with pytest.raises(EOFError):
        framing.read_frame(r, codec)


def test_a_declared_size_over_the_cap_is_refused_before_its_body_is_read(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, struct.pack(">I", 2**31 - 1) + b"{")
    with pytest.raises(framing.FrameError, match="a frame of 2,147,483,647 bytes exceeds the 16,777,216-byte limit"):
        framing.read_frame(r, protocol.JSON, protocol.MAX_MESSAGE)
    assert os.read(r, 1) == b"{"  # nothing past the header was read


def test_no_header_by_the_deadline_is_a_timeout_and_a_body_that_stops_is_a_breach(pipe: tuple[int, int]) -> None:
    r, w = pipe
    with pytest.raises(TimeoutError):
        framing.read_frame(r, protocol.JSON, deadline=time.monotonic() + 0.05)
    os.write(w, struct.pack(">I", 100) + b'{"type": "res')
    with pytest.raises(framing.FrameError, match=r"a frame stopped arriving \(declared 100 bytes\)"):
        framing.read_frame(r, protocol.JSON, deadline=time.monotonic() + 5, body_seconds=0.05)


def test_a_reader_that_stops_reading_is_a_breach_for_a_writer_with_a_deadline(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.set_blocking(w, False)
    with pytest.raises(framing.FrameError, match="the other side stopped reading"):
        framing.write_frame(w, {"text": "x" * (4 << 20)}, protocol.JSON, deadline=time.monotonic() + 0.05)


@pytest.mark.parametrize("body", [b"\xff\xfe", b'{"a": "\\ud800"}', b"[1]", b"[" * 200_000 + b"]" * 200_000],
                         ids=["not-utf8", "lone-surrogate", "not-an-object", "too-deep"])
def test_the_json_codec_refuses_what_the_sandbox_must_not_pass(pipe: tuple[int, int], body: bytes) -> None:
    r, w = pipe
    threading.Thread(target=os.write, args=(w, struct.pack(">I", len(body)) + body)).start()
    with pytest.raises(protocol.ProtocolError, match="malformed frame"):
        protocol.recv(r, deadline=time.monotonic() + 5)


def test_a_reader_fed_byte_by_byte_returns_each_frame_once_it_is_whole() -> None:
    frames = [(1, "one", None, 0.0), (2, "two" * 1000, "a problem", 0.5)]
    data = b"".join(framing.encode(f, framing.MARSHAL) for f in frames)
    reader = framing.FrameReader(framing.MARSHAL)
    got, partial_seen = [], 0
    for i in range(len(data)):
        got += reader.feed(data[i:i + 1])
        partial_seen += reader.partial
    assert got == frames and not reader.partial and partial_seen == len(data) - len(frames)


def test_a_send_takes_what_the_pipe_holds_and_keeps_the_rest(pipe: tuple[int, int]) -> None:
    r, w = pipe
    data = os.urandom(3 << 20)
    rest = framing.write_some(w, data)  # nobody reads yet: must not block
    assert 0 < len(rest) < len(data) and os.get_blocking(w)
    received = bytearray()
    while len(received) < len(data) - len(rest):
        received += os.read(r, 1 << 20)
    assert bytes(received) + rest == data
