"""Resources outside every limit: a flood on file descriptor 2, memory held in a memfd, and
threads by the thousand. Each is bounded at every level, and by the kernel alone where it can."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlmcli.sandbox import Sandbox
from tests.sandbox.conftest import make_sandbox

CONFIGS = {"auto": ("auto", ()), "basic": ("basic", ()), "kernel-only": ("strict", ("audit",))}


def _make(workspace: Path, config: str, **limits: object) -> Sandbox:
    return make_sandbox(workspace, config, cell_timeout=60, **limits)


def _bytes_on_disk(base: str) -> int:
    total = 0
    for d, _, files in os.walk(base):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return total


@pytest.mark.parametrize("config", ["auto", "basic"])
def test_a_flood_on_fd_2_lands_nowhere_on_the_host(workspace: Path, config: str) -> None:
    with _make(workspace, config) as sb:
        result = sb.run("import os\nwritten = 0\ntry:\n    for _ in range(64):\n"
                        "        written += os.write(2, b'x' * (1 << 20))\nexcept OSError as e:\n    print(type(e).__name__)\n"
                        "print('wrote', written >> 20, 'MB')")
        assert "wrote" in result.stdout, result.stderr
        # where its kernel.log was: the sandbox's own directory on the host
        assert _bytes_on_disk(sb.base) < 1 << 20, "the kernel's stderr is a file on the host"
        assert sb._stderr is not None and len(sb._stderr.kept) <= 64 * 1024  # what the parent keeps
        assert sb.run("print('alive')").stdout == "alive\n"


@pytest.mark.parametrize("config", list(CONFIGS))
def test_no_memory_outside_the_limits_in_a_memfd(workspace: Path, config: str) -> None:
    with _make(workspace, config, memory_mb=256, scratch_mb=16) as sb:
        result = sb.run("import os\nheld = 0\ntry:\n    fd = os.memfd_create('hold')\n    for _ in range(384):\n"
                        "        held += os.write(fd, b'x' * (1 << 20))\nexcept OSError as e:\n    print('refused:', e)\n"
                        "print('held', held >> 20, 'MB')")
        assert "refused" in result.stdout and "held 0 MB" in result.stdout, result.stdout + result.stderr
        result = sb.run("held = 0\ntry:\n    f = open('/dev/shm/rlm-hold', 'wb')\n    for _ in range(384):\n"
                        "        held += f.write(b'x' * (1 << 20))\nexcept OSError as e:\n    print('refused:', e)\n"
                        "print('held', held >> 20, 'MB')")
        assert "held 0 MB" in result.stdout, result.stdout + result.stderr
        assert not os.path.exists("/dev/shm/rlm-hold")


THREADS = """
import threading
threading.stack_size(65536)
release = threading.Event()
started = 0
try:
    for _ in range(3000):
        threading.Thread(target=release.wait, daemon=True).start()
        started += 1
except Exception as exc:
    print(type(exc).__name__, exc)
release.set()
print('started', started)
"""


@pytest.mark.parametrize("config", list(CONFIGS))
def test_threads_are_bounded(workspace: Path, config: str) -> None:
    with _make(workspace, config, max_threads=64) as sb:
        if config == "kernel-only" and not ({"pids-cgroup", "nproc"} & set(sb.layers)):
            pytest.skip("no pids cgroup can be made here and RLIMIT_NPROC does not bind this user (root): "
                        "the kernel alone cannot count this sandbox's threads")
        result = sb.run(THREADS)
        started = int(result.stdout.rsplit("started", 1)[1])
        assert started < 64, result.stdout + result.stderr
        assert "can't start new thread" in result.stdout or "threads" in result.stdout
        assert sb.run("print('alive')").stdout == "alive\n"
