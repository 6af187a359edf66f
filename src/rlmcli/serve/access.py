"""What an MCP client may touch: input files under the allowed roots, and workspaces.

A client (and the model behind it) names paths; each is resolved (symlinks followed) before it is
checked, so `allowed/../../etc` and a link out of an allowed root are both refused. Workspaces are
rlm's own data: a named or automatic workspace under RLM_HOME, or a path under an allowed root.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from rlmcli.errors import RlmError, UsageError
from rlmcli.workspace.store import Workspace


class Refused(RlmError):
    """A path outside what the server may read or write."""


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class Access:
    def __init__(self, roots: list[Path], default_workspace: str | None = None) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.default_workspace = default_workspace

    def describe_roots(self) -> str:
        return ", ".join(str(r) for r in self.roots)

    def check_input(self, raw: str) -> str:
        """An input path the client may ingest (absolute, or relative to the first root)."""
        if not raw or not raw.strip():
            raise UsageError("an empty path")
        if raw == "-":
            raise UsageError("'-' (stdin) is the protocol's channel here: name a file")
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = self.roots[0] / path
        real = Path(os.path.realpath(path))
        if not any(_inside(real, root) for root in self.roots):
            raise Refused(f"{raw}: outside the allowed roots ({self.describe_roots()}); "
                          "start the server with --allow DIR to add one")
        if not real.exists():
            raise UsageError(f"{raw}: no such file or directory")
        return str(real)

    def may_name(self, workspace: Path) -> bool:
        """A workspace this server may show: named or automatic (under RLM_HOME), or under a root."""
        from rlmcli.config import rlm_home

        real = Path(os.path.realpath(workspace))
        return any(_inside(real, root) for root in [*self.roots, Path(os.path.realpath(rlm_home()))])

    def workspace_spec(self, spec: str | None) -> str:
        chosen = spec if spec not in (None, "") else self.default_workspace
        if not chosen:
            from rlmcli.workspace.registry import list_workspaces

            names = [w.name for w in list_workspaces(with_size=False) if self.may_name(w.path)][:20]
            raise UsageError("no workspace named and the server has no default (-w): pass `workspace`"
                             + (f"; existing workspaces: {', '.join(names)}" if names else ""))
        if "/" in chosen or chosen in (".", ".."):
            real = Path(os.path.realpath(Path(chosen).expanduser()))
            if not self.may_name(real):
                raise Refused(f"workspace {chosen}: outside the allowed roots ({self.describe_roots()}) and RLM_HOME")
            return str(real)
        return chosen

    def open(self, spec: str | None, need_documents: bool = True) -> Workspace:
        from rlmcli.workspace.ingest import workspace_path

        chosen = self.workspace_spec(spec)
        ws = Workspace.open(workspace_path(chosen))
        if need_documents and not ws.documents():
            raise UsageError(f"the workspace {chosen} holds no documents yet: call ingest first")
        return ws


def page_uri(workspace: str, doc: str, page: int) -> str:
    """rlm://<workspace>/<doc>/<page>, each part percent-encoded (a path workspace has slashes);
    the SDK's template match decodes each part once."""
    return f"rlm://{quote(workspace, safe='')}/{quote(doc, safe='')}/{page}"
