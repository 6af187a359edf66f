from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmcli.sandbox import Sandbox
from rlmcli.sandbox.process import SandboxLimits
from rlmcli.workspace.ingest import ingest
from tests.conftest import FIXTURES


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sandbox") / "ws"
    os.environ.setdefault("RLM_HOME", str(root.parent / "home"))
    ws, report = ingest([str(FIXTURES / "contract.pdf"), str(FIXTURES / "contract.docx"), str(FIXTURES / "notes.md")], root)
    assert not report.failed
    return ws.root


def tree_digest(root: Path) -> str:
    """A hash of every path and file content under root: proves nothing changed."""
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            p = Path(dirpath) / name
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def sandbox(workspace: Path) -> Iterator[Sandbox]:
    with Sandbox(workspace, limits=SandboxLimits(cell_timeout=20)) as sb:
        yield sb
