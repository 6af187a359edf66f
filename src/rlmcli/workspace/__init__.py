"""The workspace: a directory of plain-text pages, metadata and a search index."""

from rlmcli.workspace.store import Workspace

__all__ = ["Workspace"]
