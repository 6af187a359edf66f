"""The sandbox's lifetime, its scratch quota, raw memory access, and what the model can see."""

from __future__ import annotations

import glob
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rlmcli.sandbox import Sandbox
from rlmcli.sandbox.process import SandboxLimits, sweep_stale
from tests.conftest import FIXTURES
from tests.fakeserver import FakeLLM
from tests.hostile.conftest import LOOK, ask, cell, outputs
from tests.sandbox.conftest import tree_digest


def _cmdline(pid: int) -> bytes:
    """A process's command line, or b"" when it has exited meanwhile (the token helper does)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _children(pid: int) -> list[int]:
    found = []
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        ppid = next((line.split()[1] for line in text.splitlines() if line.startswith("PPid:")), "")
        if ppid == str(pid):
            found.append(int(status.split("/")[2]))
    return found


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def test_kill_9_of_rlm_takes_the_sandbox_with_it(server: FakeLLM, tmp_path: Path) -> None:
    server.script("gpt-4o-mini", [LOOK, cell("import time\ntime.sleep(120)")])
    proc = subprocess.Popen([sys.executable, "-m", "rlmcli", "ask", str(FIXTURES / "contract.pdf"), "q", "--model",
                             "openai/gpt-4o-mini", "--api-base", server.base, "--no-cache", "-w", str(tmp_path / "ws")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    kernels: list[int] = []
    while time.time() < deadline and not (len(server.requests) >= 2 and kernels):
        # the launcher, and (in a PID namespace) the kernel it forked
        kernels = [c for c in _descendants(proc.pid) if b"kernel.py" in _cmdline(c)]
        time.sleep(0.1)
    assert kernels, "the sandbox never started"
    bases = glob.glob(os.path.join(tempfile.gettempdir(), f"rlm-sandbox-{proc.pid}-*"))
    assert bases
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone_by = time.time() + 3
    while time.time() < gone_by and any(_alive(k) for k in kernels):
        time.sleep(0.05)
    assert not any(_alive(k) for k in kernels), "the sandbox outlived its parent"
    sweep_stale()  # what the next sandbox start does
    assert not any(os.path.exists(b) for b in bases)


@pytest.mark.parametrize("level", ["auto", "basic"])
def test_scratch_has_a_quota(workspace: Path, level: str) -> None:
    limits = SandboxLimits(scratch_mb=8, scratch_files=64, cell_timeout=30)
    with Sandbox(workspace, level=level, limits=limits) as sb:
        big = sb.run("with open(SCRATCH + '/big.bin', 'wb') as f:\n    for _ in range(64):\n        f.write(b'x' * (1 << 20))")
        # the tmpfs fills up (auto); one file may not outgrow the quota and files are counted (basic)
        assert big.error and any(w in big.stderr for w in ("No space left", "scratch quota", "File too large")), big.stderr
        many = sb.run("for i in range(200):\n    open(f'{SCRATCH}/f{i}.txt', 'w').close()")
        assert many.error and ("No space left" in many.stderr or "scratch quota" in many.stderr), many.stderr
        assert not big.restarted and sb.run("print('alive')").stdout == "alive\n"


CTYPES = {
    "import": "import ctypes",
    "importlib": "import importlib\nimportlib.import_module('_ctypes')",
    "__import__": "__import__('_ctypes')",
    "the loader": ("import importlib.machinery, importlib.util, glob, sysconfig\n"
                   "path = glob.glob(sysconfig.get_paths()['stdlib'] + '/lib-dynload/_ctypes.*')[0]\n"
                   "loader = importlib.machinery.ExtensionFileLoader('_ctypes', path)\n"
                   "spec = importlib.util.spec_from_file_location('_ctypes', path, loader=loader)\n"
                   "mod = importlib.util.module_from_spec(spec)\nprint(mod)"),
    "sys.modules": "import sys\nprint([m for m in sys.modules if 'ctypes' in m or 'cffi' in m])\nsys.modules['_ctypes'].CFuncPtr",
    "the file": ("import glob, sysconfig\npath = glob.glob(sysconfig.get_paths()['stdlib'] + '/lib-dynload/_ctypes.*')[0]\n"
                 "print(len(open(path, 'rb').read()))"),
}


@pytest.mark.skipif(not (getattr(importlib.util.find_spec("_ctypes"), "origin", "") or "").endswith(".so"),
                    reason="this Python has ctypes built in, not as a file in lib-dynload")
@pytest.mark.parametrize("disable", [(), ("audit",)], ids=["auto", "kernel-only"])
@pytest.mark.parametrize("way", list(CTYPES))
def test_no_raw_memory_access_at_auto(workspace: Path, way: str, disable: tuple[str, ...]) -> None:
    with Sandbox(workspace, level="auto", disable=disable) as sb:
        if disable and not any(layer.startswith("landlock") for layer in sb.layers):
            pytest.skip("no Landlock in this kernel: with the audit hook off nothing stops ctypes here (--sandbox strict refuses to run)")
        result = sb.run(CTYPES[way])
        assert result.error, (way, result.stdout)
        assert "CFuncPtr" not in result.stdout


def test_basic_refuses_sqlite_uri_parameters(workspace: Path) -> None:
    before = tree_digest(workspace)
    with Sandbox(workspace, level="basic") as sb:
        for uri in ("file:index.sqlite?mode=rw", "file:index.sqlite?immutable=1&mode=rwc",
                    "file:index.sqlite?mode=ro&vfs=unix-none", "file:index.sqlite?cache=shared"):
            result = sb.run(f"import sqlite3\nc = sqlite3.connect({uri!r}, uri=True)\nc.execute('DELETE FROM chunks')\nc.commit()")
            assert result.error and "PermissionError" in result.stderr, (uri, result.stderr)
        ok = sb.run("import sqlite3\nprint(sqlite3.connect('file:index.sqlite?immutable=1', uri=True)"
                    ".execute('SELECT count(*) FROM chunks').fetchone()[0] > 0)")
        assert ok.stdout == "True\n", ok.stderr
    assert tree_digest(workspace) == before


def test_the_model_sees_documents_only_through_rlm_ask(server: FakeLLM, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    first, _ = ask(server, [LOOK, cell("FINAL('first [contract.pdf p.1]')")], "-w", str(ws))
    assert first.returncode == 0 and list((ws / "runs").glob("*.jsonl"))
    second, _ = ask(server, [cell("import os\nprint(sorted(os.listdir('.')), sorted(os.listdir('docs')))\nls()"),
                             cell("FINAL('ok [contract.pdf p.1]')")], "-w", str(ws))
    err = outputs(second)
    assert "['docs', 'index.sqlite', 'manifest.json'] ['contract.pdf']" in err
    assert "runs" not in err.split("iteration 1", 1)[1].split("iteration 2", 1)[0]
