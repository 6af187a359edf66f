"""Files litellm ships that rlm reads without importing litellm (2.4 s): its map of model prices
and context windows, and the tiktoken encodings it bundles (so counting tokens downloads
nothing). They are found by path inside litellm's package folder, which litellm does not
promise to keep: tests/test_litellm_files.py fails loudly if they move.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

PRICES = "model_prices_and_context_window_backup.json"
TOKENIZERS = "litellm_core_utils/tokenizers"


@functools.lru_cache(maxsize=1)
def package_dir() -> Path | None:
    """litellm's installed folder, found without importing it; None when it is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def prices() -> Path | None:
    """The JSON map of model prices and context windows."""
    folder = package_dir()
    return folder / PRICES if folder is not None and (folder / PRICES).is_file() else None


def tokenizers() -> Path | None:
    """A tiktoken cache folder holding the encodings (o200k_base, cl100k_base)."""
    folder = package_dir()
    return folder / TOKENIZERS if folder is not None and (folder / TOKENIZERS).is_dir() else None
