"""Helpers shared by extractors."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def as_file(data: bytes, suffix: str) -> Iterator[Path]:
    """Bytes (stdin, an attachment) as a temporary file, for libraries that want a path."""
    fd, name = tempfile.mkstemp(prefix="rlm-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield Path(name)
    finally:
        os.unlink(name)
