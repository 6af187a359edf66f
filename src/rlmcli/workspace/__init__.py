"""The workspace: a directory of plain-text pages, metadata and a search index.

`Workspace` (store.py) is loaded on first use: the sandbox child imports `reader` from this
package and must not pay for the writer's imports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Workspace", "WorkspaceReader"]


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from rlmcli.workspace.store import Workspace

        return Workspace
    if name == "WorkspaceReader":
        from rlmcli.workspace.reader import WorkspaceReader

        return WorkspaceReader
    raise AttributeError(name)
