"""Token counting with tiktoken's o200k_base, offline and off the critical path.

tiktoken downloads encodings on first use; litellm ships the same files, so we point
TIKTOKEN_CACHE_DIR at them (litellm_files.py: found without importing litellm, which is slow).

Building the encoding costs 0.3-0.5 s, more than extracting a 100-page PDF. So the parsed
ranks are cached with marshal under RLM_HOME, and ingest builds the encoding in a forked
helper process (`TokenCounter`) while the parent extracts text.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

from rlmcli import framing

ENCODING = "o200k_base"
PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


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
        from rlmcli import litellm_files

        found = litellm_files.tokenizers()
        if found is not None:
            os.environ["TIKTOKEN_CACHE_DIR"] = str(found)
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


def _serve(rfd: int, wfd: int) -> None:
    """The helper: build the encoding, then answer lists of texts with lists of counts."""
    try:
        encoding()
        while True:
            texts = framing.read_frame(rfd, framing.MARSHAL)
            framing.write_frame(wfd, count_tokens_many(texts), framing.MARSHAL)
    except (EOFError, OSError):
        pass


class TokenCounter:
    """Counts tokens in a forked helper that builds the encoding while the caller works.

    Plain os.fork and marshal frames (framing.py) over two pipes: importing multiprocessing would
    cost more than the fast path of a re-ingest has. Counts in-process when forking is not possible.
    """

    def __init__(self) -> None:
        self._pid = 0
        self._rfd = self._wfd = -1
        self._used = False
        self._pending: PendingCounts | None = None

    def start(self) -> None:
        if self._pid or not hasattr(os, "fork"):
            return
        threading = sys.modules.get("threading")
        if threading is not None and threading.active_count() > 1:
            # Another thread (litellm's import, say) may hold an import lock that the child would
            # wait on for ever. Count in this process instead: the encoding is then built once
            # and kept for every later ingest of this process.
            return
        from rlmcli.forking import fork_server, sigint_held

        with sigint_held():
            try:
                self._pid, to_child_w, self._rfd = fork_server(_serve)
            except OSError:
                return
            self._wfd = to_child_w
        try:  # Linux: room for a few hundred pages of text before the helper reads
            import fcntl

            fcntl.fcntl(to_child_w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
        except (OSError, ImportError):
            pass

    def count(self, texts: list[str]) -> list[int]:
        return self.submit(texts).result()

    def submit(self, texts: list[str]) -> PendingCounts:
        """Send texts to the helper and return at once, so the caller can write pages while the
        helper is still building its encoding. Collect with `.result()` before the next submit."""
        if self._pending is not None:
            self._pending.result()  # an uncollected answer (its document failed) must not be read as ours
        self._used = True
        self._pending = PendingCounts(self, list(texts))
        return self._pending

    def _exchange(self, texts: list[str], rest: bytes) -> list[int]:
        if self._pid:
            try:
                framing.write_all(self._wfd, rest)
                return list(framing.read_frame(self._rfd, framing.MARSHAL))
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

        if not self._used or self._pending is not None:
            try:  # started early but never needed, or left mid-request: do not wait for it
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._pending = None
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


class PendingCounts:
    """Token counts on their way back from the helper."""

    def __init__(self, counter: TokenCounter, texts: list[str]) -> None:
        self._counter, self._texts = counter, texts
        self._counts: list[int] | None = None
        self._rest = b""
        if counter._pid:
            # The helper reads only once its encoding is built: send what the pipe holds now
            # (start() enlarges it) and the rest when the counts are wanted. No thread, whose
            # GIL hand-offs would slow the page writes that run meanwhile.
            try:
                self._rest = framing.write_some(counter._wfd, framing.encode(texts, framing.MARSHAL))
            except (OSError, framing.FrameError):  # (a frame past 4 GiB: counted here instead)
                counter.close()

    def result(self) -> list[int]:
        if self._counts is None:
            self._counts = self._counter._exchange(self._texts, self._rest)
            self._texts, self._rest = [], b""
            if self._counter._pending is self:
                self._counter._pending = None
        return self._counts


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
