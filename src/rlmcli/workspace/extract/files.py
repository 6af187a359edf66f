"""Helpers shared by extractors."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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


def on_path(extract_path: Callable[[Path], T], path: Path, data: bytes | None, suffix: str) -> T:
    """Run a path-only extractor on a file, or on bytes (stdin, an attachment) through a temp file."""
    if data is None:
        return extract_path(path)
    with as_file(data, suffix) as temp:
        return extract_path(temp)


def copy_properties(metadata: dict[str, str], props: object, keys: tuple[str, ...] = ("title", "author", "subject")) -> None:
    """An Office document's core properties (title, author...) into the metadata, skipping empty ones."""
    for key in keys:
        value = getattr(props, key, None)
        if value:
            metadata[key] = str(value)
