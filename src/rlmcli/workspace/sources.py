"""Turning command-line inputs (files, directories, `-`) into a list of sources to ingest.

Directories are walked safely: `.gitignore` honoured at every level; version-control, build and
cache directories skipped; empty files skipped (counted); symlinks that leave the input tree
skipped with their target named (unless follow_symlinks); symlinked directories not followed
(followed with follow_symlinks, loops detected); FIFOs, sockets and devices skipped without ever
being opened (opening a FIFO would block); rlm workspaces are never walked (ingesting a folder
that holds one would add its own pages again, and again at every repeat).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

VCS_DIRS = {".git", ".hg", ".svn", ".bzr", "_darcs", "CVS", ".jj"}
# Directories of generated or third-party files in code trees.
SKIP_DIRS = VCS_DIRS | {"node_modules", "__pycache__", ".venv", "venv", ".tox", ".nox", ".mypy_cache",
                        ".pytest_cache", ".ruff_cache", ".eggs", "build", "dist", ".gradle", ".idea", ".next"}


WORKSPACE_MARKS = ("manifest.json", "index.sqlite", "docs")  # what every rlm workspace holds


def is_workspace(path: Path) -> bool:
    return all(os.path.lexists(os.path.join(path, mark)) for mark in WORKSPACE_MARKS)


@dataclass(eq=False)  # one input, hashed by identity: a dict keyed by sources holds each once
class Source:
    name: str  # shown to the user and slugged into the doc id
    path: Path | None  # None for stdin and attachments
    data: bytes | None = None  # stdin's or an attachment's bytes
    explicit: bool = True  # named on the command line (vs found in a directory)
    key: str = ""  # what the workspace remembers it by: an absolute path, '-', or 'mail.eml#report.pdf'
    depth: int = 0  # 1 for a mail's attachment, 2 for an attachment's attachment

    def __post_init__(self) -> None:
        if not self.key:
            self.key = str(self.path.resolve()) if self.path is not None else "-"


@dataclass
class Discovery:
    sources: list[Source] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (name, what is wrong): named on the command line
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, what is wrong): found in a folder
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why): shown to the user
    counts: Counter[str] = field(default_factory=Counter)  # skipped quietly, by reason

    @property
    def skipped_ignored(self) -> int:
        return self.counts["ignored"]


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


def special_kind(mode: int) -> str | None:
    """'FIFO', 'socket', 'device' for special files, else None."""
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return None


def _gitignore(directory: Path) -> Any:
    path = directory / ".gitignore"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


class _Walk:
    def __init__(self, root: Path, label: str, out: Discovery, follow_symlinks: bool) -> None:
        self.root, self.label, self.out, self.follow = root, label, out, follow_symlinks
        self.real_root = os.path.realpath(root)
        self.visited: set[str] = {self.real_root}

    def name(self, path: Path) -> str:
        rel = path.relative_to(self.root).as_posix()
        return f"{self.label}/{rel}" if rel != "." else self.label

    def inside(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root.rstrip("/") + "/")

    def run(self) -> None:
        stack: list[tuple[Path, list[tuple[Path, Any]]]] = [(self.root, [])]
        while stack:
            directory, inherited = stack.pop()
            spec = _gitignore(directory)
            active = inherited + ([(directory, spec)] if spec is not None else [])
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError as exc:
                if directory == self.root:  # the folder named on the command line
                    self.out.errors.append((self.name(directory), describe_os_error(exc)))
                else:
                    self.out.unreadable.append((self.name(directory), describe_os_error(exc)))
                continue
            subdirs = []
            for entry in entries:
                subdir = self.entry(Path(entry.path), entry, active)
                if subdir is not None:
                    subdirs.append((subdir, active))
            stack.extend(reversed(subdirs))

    def entry(self, path: Path, entry: os.DirEntry[str], active: list[tuple[Path, Any]]) -> Path | None:
        """Add a file to the sources; return a directory to walk; skip the rest, saying why."""
        out = self.out
        try:
            is_link = entry.is_symlink()
            st = os.stat(path) if is_link else entry.stat(follow_symlinks=False)
        except OSError as exc:  # a dangling link or a loop: nothing to ingest, nothing to block on
            out.skipped.append((self.name(path), f"skipped: {describe_os_error(exc)}"))
            return None
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and entry.name in SKIP_DIRS:
            out.counts["ignored"] += 1
            return None
        if is_dir and is_workspace(path):
            out.skipped.append((self.name(path), "skipped: an rlm workspace (ingest the original files instead)"))
            return None
        if any(s.match_file(path.relative_to(base).as_posix() + ("/" if is_dir else "")) for base, s in active):
            out.counts["ignored"] += 1
            return None
        if is_link:
            real = os.path.realpath(path)
            if not self.follow and not self.inside(real):
                out.skipped.append((self.name(path), f"skipped: a symlink to {real}, outside the input "
                                                     "directory (--follow-symlinks ingests it)"))
                return None
            if is_dir:
                if not self.follow:
                    out.counts["ignored"] += 1  # not followed: no loops, no duplicates
                    return None
                if real in self.visited:
                    out.skipped.append((self.name(path), "skipped: a symlink loop"))
                    return None
                self.visited.add(real)
        if is_dir:
            return path
        kind = special_kind(st.st_mode)
        if kind is not None:
            out.skipped.append((self.name(path), f"skipped: not a regular file ({kind})"))
            return None
        if st.st_size == 0:
            out.counts["empty"] += 1
            return None
        out.sources.append(Source(self.name(path), path, explicit=False))
        return None


def discover(inputs: list[str], stdin: BinaryIO | None = None, follow_symlinks: bool = False) -> Discovery:
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
            st = os.stat(path)  # follows links: a loop or a dangling link is named here
        except OSError as exc:
            out.errors.append((raw, describe_os_error(exc)))
            continue
        if stat.S_ISDIR(st.st_mode):
            if is_workspace(path):
                out.errors.append((raw, "an rlm workspace: ingest the original files, not its pages"))
                continue
            label = path.resolve().name or raw
            _Walk(path, label, out, follow_symlinks).run()
        elif special_kind(st.st_mode) is not None:
            out.errors.append((raw, f"not a regular file ({special_kind(st.st_mode)})"))
        else:
            out.sources.append(Source(path.name, path))
    return out


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
