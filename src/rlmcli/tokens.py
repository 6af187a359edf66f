"""Token counting with tiktoken's o200k_base, offline.

tiktoken downloads encodings on first use; litellm ships the same files, so we point
TIKTOKEN_CACHE_DIR at them (without importing litellm, which is slow to import).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

ENCODING = "o200k_base"


def _litellm_tokenizer_dir() -> str | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
    return str(path) if path.is_dir() else None


@functools.lru_cache(maxsize=1)
def encoding() -> Any:
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        found = _litellm_tokenizer_dir()
        if found:
            os.environ["TIKTOKEN_CACHE_DIR"] = found
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


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
