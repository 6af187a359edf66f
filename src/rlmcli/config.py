"""Paths and settings that do not need any heavy import."""

from __future__ import annotations

import os
from pathlib import Path


def rlm_home() -> Path:
    """`$RLM_HOME`, else `$XDG_DATA_HOME/rlm`, else `~/.local/share/rlm`."""
    env = os.environ.get("RLM_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "rlm"


def workspaces_dir() -> Path:
    return rlm_home() / "workspaces"


def auto_workspaces_dir() -> Path:
    return rlm_home() / "auto"
