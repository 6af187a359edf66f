"""Turning command-line inputs (files, directories, `-`) into a list of sources to ingest."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

VCS_DIRS = {".git", ".hg", ".svn", ".bzr", "_darcs", "CVS", ".jj"}


@dataclass
class Source:
    name: str  # shown to the user and slugged into the doc id
    path: Path | None  # None for stdin
    data: bytes | None = None  # stdin's bytes
    explicit: bool = True  # named on the command line (vs found in a directory)


@dataclass
class Discovery:
    sources: list[Source] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (name, what is wrong)
    skipped_ignored: int = 0  # .gitignore'd or VCS entries


def describe_os_error(exc: OSError) -> str:
    """One short phrase for an OSError ('permission denied', 'symlink loop', ...)."""
    names = {
        errno.ENOENT: "no such file or directory",
        errno.EACCES: "permission denied (unreadable)",
        errno.EPERM: "permission denied (unreadable)",
        errno.ELOOP: "symlink loop (too many levels of symbolic links)",
        errno.EISDIR: "is a directory",
        errno.ENAMETOOLONG: "file name too long",
        errno.EIO: "I/O error while reading",
    }
    return names.get(exc.errno or 0, exc.strerror or str(exc))


def _gitignore(directory: Path) -> Any:
    path = directory / ".gitignore"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _walk(root: Path, label: str, out: Discovery) -> None:
    """Files under `root`, honouring .gitignore files at every level; symlinked dirs not followed."""
    specs: list[tuple[Path, Any]] = []
    stack: list[tuple[Path, list[tuple[Path, Any]]]] = [(root, specs)]
    while stack:
        directory, inherited = stack.pop()
        spec = _gitignore(directory)
        active = inherited + ([(directory, spec)] if spec is not None else [])
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            out.errors.append((_label(label, root, directory), describe_os_error(exc)))
            continue
        subdirs = []
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                if entry.is_symlink():
                    os.stat(path)  # raises for a loop or a dangling link
            except OSError as exc:
                out.errors.append((_label(label, root, path), describe_os_error(exc)))
                continue
            if is_dir and entry.name in VCS_DIRS:
                out.skipped_ignored += 1
                continue
            if any(s.match_file(path.relative_to(base).as_posix() + ("/" if is_dir else "")) for base, s in active):
                out.skipped_ignored += 1
                continue
            if is_dir:
                subdirs.append((path, active))
            elif entry.is_symlink() and path.is_dir():
                out.skipped_ignored += 1  # not followed: avoids loops and escaping the tree
            elif path.is_file():
                out.sources.append(Source(_label(label, root, path), path, explicit=False))
        stack.extend(reversed(subdirs))


def _label(label: str, root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return f"{label}/{rel}" if rel != "." else label


def discover(inputs: list[str], stdin: BinaryIO | None = None) -> Discovery:
    out = Discovery()
    for raw in inputs:
        if raw == "-":
            stream = stdin
            if stream is None:
                import sys

                stream = sys.stdin.buffer
            out.sources.append(Source("stdin", None, data=stream.read()))
            continue
        path = Path(raw).expanduser()
        try:
            os.stat(path)  # follows links: a loop or a dangling link is named here
        except OSError as exc:
            out.errors.append((raw, describe_os_error(exc)))
            continue
        if os.path.isdir(path):
            label = path.resolve().name or raw
            _walk(path, label, out)
        elif not path.is_file():
            out.errors.append((raw, "not a regular file (device, FIFO or socket)"))
        else:
            out.sources.append(Source(path.name, path))
    return out
