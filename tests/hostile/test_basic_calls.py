"""Calls that raised no audit event, so `basic` (the audit hook alone) never saw them: SQLite
`ATTACH` and `VACUUM INTO`, FIFOs and device nodes, scheduling other processes, terminals.
Each is refused at `basic`, and by the kernel layers alone."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmcli.sandbox import Sandbox
from rlmcli.sandbox.process import SandboxLimits
from tests.sandbox.conftest import need_kernel, tree_digest

CONFIGS = {"basic": ("basic", ()), "auto": ("auto", ()), "kernel-only": ("strict", ("audit",))}


@pytest.fixture(params=list(CONFIGS))
def sandbox(request: pytest.FixtureRequest, workspace: Path) -> Iterator[Sandbox]:
    if request.param == "kernel-only":
        need_kernel()
    level, disable = CONFIGS[request.param]
    with Sandbox(workspace, level=level, disable=disable, limits=SandboxLimits(cell_timeout=20)) as sb:
        yield sb


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    db = tmp_path / "outside.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE secret (x)")
    conn.execute("INSERT INTO secret VALUES ('TOP SECRET ROW')")
    conn.commit()
    conn.close()
    return tmp_path


SQL = {
    "attach an outside file": "c.execute(\"ATTACH DATABASE ? AS o\", (OUTSIDE + '/outside.sqlite',))\n"
                              "print(c.execute('SELECT x FROM o.secret').fetchall())",
    "vacuum into an outside file": "c.execute('VACUUM INTO ?', (OUTSIDE + '/copy.sqlite',))",
    "attach the index read-write": "c.execute(\"ATTACH DATABASE 'index.sqlite' AS idx\")\nc.execute('DELETE FROM idx.chunks')\n"
                                   "c.commit()",
}


@pytest.mark.parametrize("attack", list(SQL))
def test_sqlite_attach_and_vacuum_into(sandbox: Sandbox, workspace: Path, outside: Path, attack: str) -> None:
    before = tree_digest(workspace)
    code = "import sqlite3\nc = sqlite3.connect(':memory:')\n" + SQL[attack].replace("OUTSIDE", repr(str(outside)))
    result = sandbox.run(code)
    assert result.error, result.stdout
    assert "TOP SECRET" not in result.stdout
    assert not (outside / "copy.sqlite").exists()
    assert tree_digest(workspace) == before


@pytest.mark.parametrize("call", ["os.mkfifo(PATH)", "os.mknod(PATH)", "os.mkfifo(SCRATCH + '/fifo')",
                                  "os.mknod(SCRATCH + '/node', 0o600 | stat.S_IFIFO)"])
def test_no_fifos_or_device_nodes(sandbox: Sandbox, tmp_path: Path, call: str) -> None:
    target = tmp_path / "made"
    result = sandbox.run("import os, stat\n" + call.replace("PATH", repr(str(target))))
    assert result.error, result.stdout
    assert not target.exists()


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("call", ["os.setpriority(os.PRIO_PROCESS, PID, 19)", "os.sched_setaffinity(PID, {0})",
                                  "os.sched_setscheduler(PID, os.SCHED_IDLE, os.sched_param(0))",
                                  "os.sched_setparam(PID, os.sched_param(0))"])
def test_no_scheduling_other_processes(sandbox: Sandbox, victim: subprocess.Popen[bytes], call: str) -> None:
    before = (os.getpriority(os.PRIO_PROCESS, victim.pid), os.sched_getaffinity(victim.pid),
              os.sched_getscheduler(victim.pid))
    result = sandbox.run("import os\n" + call.replace("PID", str(victim.pid)))
    assert result.error, result.stdout
    assert (os.getpriority(os.PRIO_PROCESS, victim.pid), os.sched_getaffinity(victim.pid),
            os.sched_getscheduler(victim.pid)) == before


def test_no_terminals(sandbox: Sandbox) -> None:
    result = sandbox.run("import os\nprint(os.openpty())")
    assert result.error, result.stdout
    result = sandbox.run("import pty\nprint(pty.openpty())")
    assert result.error, result.stdout


def test_own_scheduling_still_works(sandbox: Sandbox) -> None:
    result = sandbox.run("import os\nos.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0))\n"
                         "os.sched_setaffinity(0, os.sched_getaffinity(0))\nprint('ok')")
    assert result.stdout == "ok\n", result.stderr
