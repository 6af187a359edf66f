"""Native code from scratch: model code writes a shared library into its scratch directory under a
name that does not end in `.so` and loads it with the extension loader. Its constructor runs raw
system calls: it disarms the parent-death signal, reads a host SysV shared-memory segment, writes
into a host message queue, watches host directories with inotify and holds memory in a memfd.

With every layer the library never loads (the audit hook refuses any extension module from outside
the standard library, and scratch is mounted `noexec`). With the audit hook and the mount namespace
switched off it loads, and seccomp and the IPC namespace refuse each of its calls."""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmcli.sandbox import Sandbox
from rlmcli.sandbox.process import SandboxLimits
from tests.hostile.test_sandbox_hostile import _alive, _descendants
from tests.sandbox.conftest import need_kernel

ATTACK_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>

static FILE *out;
static void note(const char *what, long rc) { fprintf(out, "%s %ld %d\n", what, rc, rc < 0 ? errno : 0); }

__attribute__((constructor)) static void attack(void) {
    const char *dir = getenv("TMPDIR");
    char path[4096];
    unsigned shm_key = 0, msg_key = 0;
    snprintf(path, sizeof path, "%s/keys.txt", dir ? dir : "/tmp");
    FILE *keys = fopen(path, "r");
    if (keys) { if (fscanf(keys, "%u %u", &shm_key, &msg_key) != 2) shm_key = msg_key = 0; fclose(keys); }
    snprintf(path, sizeof path, "%s/report.txt", dir ? dir : "/tmp");
    out = fopen(path, "w");
    if (!out) return;
    note("prctl_pdeathsig", prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0));
    int shm = shmget((key_t)shm_key, 0, 0);
    note("shmget", shm);
    if (shm >= 0) {
        char *p = shmat(shm, NULL, SHM_RDONLY);
        if (p != (void *)-1) fprintf(out, "shm_read %.40s\n", p); else note("shmat", -1);
    }
    int q = msgget((key_t)msg_key, 0);
    note("msgget", q);
    if (q >= 0) {
        struct { long mtype; char text[8]; } m = {1, "pwned"};
        note("msgsnd", msgsnd(q, &m, 6, IPC_NOWAIT));
    }
    int in = inotify_init1(0);
    note("inotify_init1", in);
    if (in >= 0) note("inotify_add_watch", inotify_add_watch(in, "/tmp", IN_CREATE));
    note("memfd_create", syscall(SYS_memfd_create, "hold", 0));
    note("userfaultfd", syscall(SYS_userfaultfd, 0));
    note("shmget_private", shmget(IPC_PRIVATE, 1 << 20, IPC_CREAT | 0600));
    fclose(out);
}
"""

LOAD = """
import importlib.machinery, importlib.util, os
open(SCRATCH + '/keys.txt', 'w').write(KEYS)
open(SCRATCH + '/evil.bin', 'wb').write(bytes.fromhex(LIBRARY))
loader = importlib.machinery.ExtensionFileLoader('evil', SCRATCH + '/evil.bin')
try:
    importlib.util.module_from_spec(importlib.util.spec_from_loader('evil', loader))
except BaseException as exc:
    print('load failed:', type(exc).__name__, exc)
report = SCRATCH + '/report.txt'
print('REPORT', open(report).read() if os.path.exists(report) else 'the constructor never ran')
"""


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler here to build the attack's native library")
    where = tmp_path_factory.mktemp("native")
    (where / "attack.c").write_text(ATTACK_C)
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(where / "attack.so"), str(where / "attack.c")], check=True)
    return (where / "attack.so").read_bytes()


class HostIpc:
    """A root-or-user SysV shared-memory segment holding a canary and an empty message queue."""

    CANARY = b"HOST-SHM-SECRET-7f3a"

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.shmat.restype = ctypes.c_void_p
        self.shm_key, self.msg_key = random.randrange(1 << 24, 1 << 30), random.randrange(1 << 24, 1 << 30)
        self.shm = self.libc.shmget(self.shm_key, 4096, 0o1000 | 0o600)  # IPC_CREAT, mode 0600
        self.msg = self.libc.msgget(self.msg_key, 0o1000 | 0o600)
        assert self.shm >= 0 and self.msg >= 0, os.strerror(ctypes.get_errno())
        address = self.libc.shmat(self.shm, None, 0)
        ctypes.memmove(address, self.CANARY, len(self.CANARY))
        self.libc.shmdt(ctypes.c_void_p(address))

    def queue_is_empty(self) -> bool:
        buf = ctypes.create_string_buffer(64)
        return self.libc.msgrcv(self.msg, buf, 48, 0, 0o4000) < 0  # IPC_NOWAIT: ENOMSG when empty

    def close(self) -> None:
        self.libc.shmctl(self.shm, 0, None)  # IPC_RMID
        self.libc.msgctl(self.msg, 0, None)


@pytest.fixture
def host_ipc() -> Iterator[HostIpc]:
    ipc = HostIpc()
    try:
        yield ipc
    finally:
        ipc.close()


def _attack(sb: Sandbox, library: bytes, ipc: HostIpc) -> str:
    code = LOAD.replace("KEYS", repr(f"{ipc.shm_key} {ipc.msg_key}")).replace("LIBRARY", repr(library.hex()))
    result = sb.run(code)
    assert "REPORT" in result.stdout, result.stderr
    return result.stdout.split("REPORT", 1)[1]


@pytest.mark.parametrize("level", ["auto", "strict", "basic"])
def test_a_library_from_scratch_never_loads(workspace: Path, library: bytes, host_ipc: HostIpc, level: str) -> None:
    with Sandbox(workspace, level=level, limits=SandboxLimits(cell_timeout=30)) as sb:
        report = _attack(sb, library, host_ipc)
        assert "the constructor never ran" in report, report
        # the other ways to the same loader: the extension's own suffix, and _imp directly
        for name in ("evil" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"), "evil"):
            result = sb.run(f"import _imp, importlib.machinery, os\nos.rename(SCRATCH + '/evil.bin', SCRATCH + '/{name}')\n"
                            f"spec = importlib.machinery.ModuleSpec('evil', None, origin=SCRATCH + '/{name}')\n"
                            f"try:\n    _imp.create_dynamic(spec)\nexcept BaseException as e:\n    print('refused', e)\n"
                            f"os.rename(SCRATCH + '/{name}', SCRATCH + '/evil.bin')\n"
                            "print(os.path.exists(SCRATCH + '/report.txt'))")
            assert result.stdout.endswith("False\n"), result.stdout + result.stderr
    assert host_ipc.queue_is_empty()


def test_scratch_is_noexec_without_the_audit_hook(workspace: Path, library: bytes, host_ipc: HostIpc) -> None:
    need_kernel()  # without the kernel's namespaces scratch is a plain directory
    with Sandbox(workspace, level="strict", disable=("audit",)) as sb:
        assert "mountns" in sb.layers
        report = _attack(sb, library, host_ipc)
        assert "the constructor never ran" in report, report


def test_seccomp_and_the_ipc_namespace_refuse_each_native_call(workspace: Path, library: bytes,
                                                              host_ipc: HostIpc) -> None:
    """The library loads (no audit hook, scratch a plain directory): every call it makes fails."""
    need_kernel()
    with Sandbox(workspace, level="strict", disable=("audit", "mountns")) as sb:
        report = _attack(sb, library, host_ipc)
    assert "never ran" not in report, report  # the library did load: the kernel layers alone stand
    calls = dict(line.split(" ", 1) for line in report.strip().splitlines())
    assert set(calls) >= {"prctl_pdeathsig", "shmget", "msgget", "inotify_init1", "memfd_create", "userfaultfd",
                          "shmget_private"}, report
    assert all(rc.split()[0] == "-1" for rc in calls.values()), report
    assert "shm_read" not in calls and HostIpc.CANARY.decode() not in report
    assert host_ipc.queue_is_empty()


ORPHAN_PARENT = """
import json, sys, time
from rlmcli.sandbox import Sandbox
cfg = json.loads(sys.argv[1])
sb = Sandbox(cfg['workspace'], level=cfg['level'], disable=tuple(cfg['disable'])).start()
result = sb.run(cfg['code'])
print(json.dumps({'out': result.stdout, 'err': result.stderr}), flush=True)
time.sleep(600)
"""

# Pure Python: fool a watchdog that asks os.getppid(), ignore every signal a dying parent's session
# might send, and keep a thread the interpreter waits for at exit; then (where the library loads)
# disarm the parent-death signal natively.
FOOL = ("import os, signal, threading, time\nparent = os.getppid()\nos.getppid = lambda: parent\n"
        "for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n    signal.signal(s, signal.SIG_IGN)\n"
        "def linger():\n    while True:\n        time.sleep(0.1)\n"
        "threading.Thread(target=linger).start()  # not a daemon: the interpreter waits for it at exit\n")


@pytest.mark.parametrize("config", ["auto", "kernel-only"])
def test_the_sandbox_dies_with_its_parent_whatever_its_code_does(workspace: Path, library: bytes,
                                                                 host_ipc: HostIpc, config: str) -> None:
    if config == "kernel-only":
        need_kernel()
    level, disable = ("auto", []) if config == "auto" else ("strict", ["audit", "mountns"])
    code = FOOL + LOAD.replace("KEYS", repr(f"{host_ipc.shm_key} {host_ipc.msg_key}")).replace("LIBRARY",
                                                                                             repr(library.hex()))
    cfg = {"workspace": str(workspace), "level": level, "disable": disable, "code": code}
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_PARENT, json.dumps(cfg)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, cwd=str(Path(__file__).parents[2]))
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, "the parent never reported"
        sandbox = _descendants(parent.pid)
        assert sandbox, json.loads(line)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        gone_by = time.time() + 5
        while time.time() < gone_by and any(_alive(p) for p in sandbox):
            time.sleep(0.05)
        survivors = [p for p in sandbox if _alive(p)]
        for p in survivors:
            os.kill(p, signal.SIGKILL)
        assert not survivors, f"outlived its parent: {json.loads(line)}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
