"""Token counting with tiktoken's o200k_base, offline and off the critical path.

tiktoken downloads encodings on first use; litellm ships the same files, so we point
TIKTOKEN_CACHE_DIR at them (without importing litellm, which is slow to import).

Building the encoding costs 0.3-0.5 s, more than extracting a 100-page PDF. So the parsed
ranks are cached with marshal under RLM_HOME, and ingest builds the encoding in a forked
helper process (`TokenCounter`) while the parent extracts text.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

ENCODING = "o200k_base"


def _litellm_tokenizer_dir() -> str | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
    return str(path) if path.is_dir() else None


def _cache_path() -> Path:
    from rlmcli.config import rlm_home

    tag = f"{sys.implementation.cache_tag}"  # marshal's format is tied to the Python version
    return rlm_home() / "cache" / f"tiktoken-{ENCODING}-{tag}.marshal"


@functools.lru_cache(maxsize=1)
def encoding() -> Any:
    import marshal

    import tiktoken

    cache = _cache_path()
    try:
        kw = marshal.loads(cache.read_bytes())
        return tiktoken.Encoding(name=ENCODING, **kw)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        found = _litellm_tokenizer_dir()
        if found:
            os.environ["TIKTOKEN_CACHE_DIR"] = found
    from tiktoken_ext.openai_public import ENCODING_CONSTRUCTORS

    kw = ENCODING_CONSTRUCTORS[ENCODING]()
    kw.pop("name", None)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps(kw))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs speed
    return tiktoken.Encoding(name=ENCODING, **kw)


def count_tokens(text: str) -> int:
    if not text:
        return 0
    return len(encoding().encode_ordinary(text))


def count_tokens_many(texts: list[str]) -> list[int]:
    """Token counts for many texts at once (tiktoken batches them over threads)."""
    if len(texts) < 16:  # a thread pool costs more than it saves on a few pages
        enc = encoding()
        return [len(enc.encode_ordinary(t)) for t in texts]
    return [len(t) for t in encoding().encode_ordinary_batch(texts, num_threads=2)]


def _write_frame(fd: int, obj: Any) -> None:
    import marshal
    import struct

    data = marshal.dumps(obj)
    view = memoryview(struct.pack(">Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_frame(fd: int) -> Any:
    import marshal
    import struct

    def exact(n: int) -> bytes:
        parts = []
        while n:
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    (length,) = struct.unpack(">Q", exact(8))
    return marshal.loads(exact(length))


def _serve(rfd: int, wfd: int) -> None:
    """The helper: build the encoding, then answer lists of texts with lists of counts."""
    try:
        encoding()
        while True:
            texts = _read_frame(rfd)
            _write_frame(wfd, count_tokens_many(texts))
    except (EOFError, OSError):
        pass


class TokenCounter:
    """Counts tokens in a forked helper that builds the encoding while the caller works.

    Plain os.fork and marshal over two pipes: importing multiprocessing would cost more than the
    fast path of a re-ingest has. Counts in-process when forking is not possible.
    """

    def __init__(self) -> None:
        self._pid = 0
        self._rfd = self._wfd = -1
        self._used = False

    def start(self) -> None:
        if self._pid or not hasattr(os, "fork"):
            return
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
                os.close(fd)
            return
        if pid == 0:  # the helper
            os.close(to_child_w)
            os.close(from_child_r)
            try:
                _serve(to_child_r, from_child_w)
            finally:
                os._exit(0)
        os.close(to_child_r)
        os.close(from_child_w)
        self._pid, self._rfd, self._wfd = pid, from_child_r, to_child_w

    def count(self, texts: list[str]) -> list[int]:
        self._used = True
        if self._pid:
            try:
                _write_frame(self._wfd, list(texts))
                return list(_read_frame(self._rfd))
            except (OSError, EOFError, ValueError):
                self.close()
        return count_tokens_many(texts)

    def close(self) -> None:
        global _early
        if _early is self:
            _early = None
        if not self._pid:
            return
        import signal

        if not self._used:
            try:
                os.kill(self._pid, signal.SIGKILL)  # started early, never needed: do not wait for it
            except ProcessLookupError:
                pass
        for fd in (self._wfd, self._rfd):  # the helper sees EOF and exits
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.waitpid(self._pid, 0)
        except ChildProcessError:
            pass
        self._pid, self._rfd, self._wfd = 0, -1, -1

    def __enter__(self) -> TokenCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_early: TokenCounter | None = None


def start_early() -> None:
    """Fork the helper at process start (before the CLI's imports) so the encoding is ready sooner."""
    global _early
    if _early is None:
        _early = TokenCounter()
        _early.start()


def counter() -> TokenCounter:
    """The helper started early, if any, else a new one (started on first need)."""
    return _early if _early is not None else TokenCounter()
