from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmcli.sandbox import Sandbox, SandboxError
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


def _kernel_layers_available() -> bool:
    try:
        with Sandbox(Path(__file__).parent, level="strict") as sb:
            return any(layer.startswith("landlock") for layer in sb.layers)
    except SandboxError:
        return False


KERNEL = _kernel_layers_available()
# Where the configurations differ in name, they are the same three: every layer, the audit hook
# alone (basic), and the kernel layers alone (the audit hook off).
LEVELS = {"full": ("auto", ()), "auto": ("auto", ()), "audit-only": ("basic", ()), "basic": ("basic", ()),
          "kernel-only": ("strict", ("audit",))}


def need_kernel() -> None:
    """Skip a test of the kernel layers on a machine that cannot give them."""
    if not KERNEL:
        pytest.skip("this kernel offers no unprivileged Landlock/namespaces, so there is no kernel layer to test")


def make_sandbox(workspace: Path, config: str, cell_timeout: float = 20, **limits: object) -> Sandbox:
    """A started sandbox in one of the LEVELS configurations."""
    if config == "kernel-only":
        need_kernel()
    level, disable = LEVELS[config]
    return Sandbox(workspace, level=level, disable=disable,
                   limits=SandboxLimits(cell_timeout=cell_timeout, **limits)).start()  # type: ignore[arg-type]
