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


def _serve(conn: Any) -> None:
    encoding()
    while True:
        try:
            texts = conn.recv()
        except EOFError:
            return
        if texts is None:
            return
        conn.send(count_tokens_many(texts))


class TokenCounter:
    """Counts tokens in a helper process that loads the encoding while the caller works.

    Falls back to counting in-process when a process cannot be forked.
    """

    def __init__(self) -> None:
        self._conn: Any = None
        self._proc: Any = None

    def start(self) -> None:
        if self._proc is not None or os.name != "posix":
            return
        import multiprocessing

        try:
            ctx = multiprocessing.get_context("fork")
            parent, child = ctx.Pipe()
            self._proc = ctx.Process(target=_serve, args=(child,), daemon=True)
            self._proc.start()
            child.close()
            self._conn = parent
        except OSError:
            self._proc = self._conn = None

    def count(self, texts: list[str]) -> list[int]:
        if self._conn is not None:
            try:
                self._conn.send(texts)
                return self._conn.recv()
            except (OSError, EOFError):
                self.close()
        return count_tokens_many(texts)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.kill()
            self._proc = None

    def __enter__(self) -> TokenCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
