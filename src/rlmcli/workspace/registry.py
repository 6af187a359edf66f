"""All workspaces rlm knows (under RLM_HOME, and made by path): listing, the most recently used, pruning automatic ones."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlmcli.config import auto_workspaces_dir, links_dir, rlm_home, workspaces_dir
from rlmcli.errors import WorkspaceError
from rlmcli.workspace.store import Workspace


@dataclass
class WorkspaceInfo:
    name: str
    path: Path
    auto: bool
    documents: int
    tokens: int
    size: int
    last_used: float
    sources: list[str] = field(default_factory=list)  # its first documents' names
    short: str = ""  # an automatic workspace's shortest unique name (auto:f758d4), for people

    @property
    def label(self) -> str:
        """How a person tells it apart: an automatic workspace by what it holds,
        `auto:f758d4 (contract.pdf +2)`; a named one by its name."""
        if not self.auto:
            return self.name
        more = f" +{self.documents - 1}" if self.documents > 1 else ""
        first = self.sources[0] if self.sources else "empty"
        return f"{self.short or self.name} ({first}{more})"


def mark_used(root: Path) -> None:
    """Record a use of the workspace at `root`, for `rlm workspaces` and `--prune`; a workspace
    outside RLM_HOME gets a link there, so it is listed and can be the last used one."""
    with contextlib.suppress(OSError):
        (root / ".last_used").touch()
    root = root.resolve()
    if root.is_relative_to(rlm_home().resolve()):
        return
    import hashlib

    link = links_dir() / hashlib.sha256(str(root).encode()).hexdigest()[:16]
    with contextlib.suppress(OSError):
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(root, link)


def last_used(root: Path) -> float:
    for name in (".last_used", "manifest.json"):
        with contextlib.suppress(OSError):
            return (root / name).stat().st_mtime
    return 0.0


def size_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _candidates() -> list[tuple[str, Path, bool]]:
    """(name, path, automatic) of every workspace: named and automatic ones under RLM_HOME, and
    those made by path, which RLM_HOME/links points to (a link whose workspace is gone is dropped)."""
    out = []
    for base, auto in ((workspaces_dir(), False), (auto_workspaces_dir(), True)):
        if base.is_dir():
            for p in sorted(base.iterdir()):
                if (p / "manifest.json").is_file():
                    out.append((("auto:" if auto else "") + p.name, p, auto))
    if links_dir().is_dir():
        for link in sorted(links_dir().iterdir()):
            try:
                target = Path(os.readlink(link))
            except OSError:
                continue
            if (target / "manifest.json").is_file():
                out.append((str(target), target, False))
            else:
                with contextlib.suppress(OSError):
                    link.unlink()
    return out


def list_workspaces(with_size: bool = True) -> list[WorkspaceInfo]:
    """Every workspace, the most recently used first."""
    infos = []
    for name, path, auto in _candidates():
        ws = Workspace(path)
        try:
            manifest = ws.manifest()
        except WorkspaceError:
            manifest = {}
        totals = manifest.get("totals", {})
        sources = [str(rec.get("name") or doc) for doc, rec in list((manifest.get("documents") or {}).items())[:3]]
        infos.append(WorkspaceInfo(name, path, auto, totals.get("documents", 0), totals.get("tokens", 0),
                                   size_bytes(path) if with_size else 0, last_used(path), sources))
    keys = [i.path.name for i in infos if i.auto]
    for info in infos:
        if info.auto:
            info.short = "auto:" + _unique_prefix(info.path.name, keys)
    return sorted(infos, key=lambda i: -i.last_used)


def _unique_prefix(key: str, keys: list[str], least: int = 6) -> str:
    """The shortest prefix of `key`, at least `least` characters, that no other key starts with."""
    for n in range(least, len(key)):
        if sum(k.startswith(key[:n]) for k in keys) == 1:
            return key[:n]
    return key


def most_recent_root() -> Path:
    """Where the workspace used last is, without opening it (shell completion reads it)."""
    used = []
    for _, path, _ in _candidates():
        try:
            used.append(((path / ".last_used").stat().st_mtime, path))
        except OSError:
            continue
    if not used:
        raise WorkspaceError("no workspaces yet: ingest something first (`rlm ingest FILE`)")
    return max(used, key=lambda pair: pair[0])[1]


def most_recent() -> Workspace:
    """The workspace used last: what `rlm ls` and friends show without `-w`. Only a workspace an
    ingest put documents into counts (it then has a .last_used mark)."""
    return Workspace.open(most_recent_root())


def _unlocked(path: Path) -> bool:
    """True when no rlm process is writing to the workspace right now."""
    import fcntl

    try:
        with open(path / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except OSError:
        return False


def prunable(days: float) -> list[WorkspaceInfo]:
    """Automatic workspaces unused for `days` days (named ones are never pruned)."""
    cutoff = time.time() - days * 86400
    return [info for info in list_workspaces(with_size=True) if info.auto and info.last_used < cutoff]


def remove(infos: list[WorkspaceInfo]) -> list[WorkspaceInfo]:
    """Delete these workspaces, skipping any an rlm process is writing to right now."""
    removed = []
    for info in infos:
        if _unlocked(info.path):
            shutil.rmtree(info.path, ignore_errors=True)
            removed.append(info)
    return removed


def prune(days: float) -> list[WorkspaceInfo]:
    return remove(prunable(days))
