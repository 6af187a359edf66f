"""A pids cgroup per sandbox, where one can be made: the kernel's own count of its tasks.

RLIMIT_NPROC bounds a sandbox's threads only for a non-root user inside its own user namespace
(the kernel exempts root). A pids cgroup bounds them for whoever may create one: root, or a user
with a delegated cgroup v2 subtree. The parent creates the group, moves each launcher into it
before the launcher forks or execs the kernel (so every thread of the kernel is counted), and
removes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

PREFIX = "rlm-sandbox-"


def _pids_root() -> str | None:
    """The directory of this process's own pids cgroup, cgroup v1 or v2, or None."""
    try:
        with open("/proc/self/cgroup") as fh:
            groups = [line.rstrip("\n").split(":", 2) for line in fh if line.count(":") >= 2]
        with open("/proc/self/mountinfo") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None
    for fields in mounts:
        if "-" not in fields:
            continue
        dash = fields.index("-")
        fstype, options, mount_root, mount_point = fields[dash + 1], fields[-1], fields[3], fields[4]
        for hierarchy, controllers, path in groups:
            if fstype == "cgroup" and "pids" in options.split(",") and "pids" in controllers.split(","):
                pass
            elif fstype == "cgroup2" and hierarchy == "0" and controllers == "":
                try:
                    with open(os.path.join(mount_point, path.lstrip("/"), "cgroup.subtree_control")) as fh:
                        if "pids" not in fh.read().split():
                            continue  # children of our group could not count pids
                except OSError:
                    continue
            else:
                continue
            if mount_root != "/" and not path.startswith(mount_root):
                continue
            relative = path[len(mount_root):] if mount_root != "/" else path
            return os.path.join(mount_point, relative.lstrip("/"))
    return None


def create(name: str, max_tasks: int) -> str | None:
    """A new pids cgroup `name` holding at most `max_tasks` tasks; None where none can be made."""
    root = _pids_root()
    if root is None:
        return None
    path = os.path.join(root, name)
    try:
        os.mkdir(path)
    except OSError:
        return None
    try:
        with open(os.path.join(path, "pids.max"), "w") as fh:
            fh.write(str(max_tasks))
    except OSError:
        remove(path)
        return None
    return path


def add(path: str, pid: int) -> None:
    """Move process `pid` (and so every task it starts later) into the group; OSError if refused."""
    with open(os.path.join(path, "cgroup.procs"), "w") as fh:
        fh.write(str(pid))


def remove(path: str, wait: float = 0.5) -> None:
    """Remove an emptied group; a killed task may take a moment to leave it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                return  # left for sweep() once this process is gone
            time.sleep(0.01)


def sweep(alive: Callable[[int], bool]) -> None:
    """Remove the groups of sandboxes whose parent process is gone (`alive(pid)` says)."""
    root = _pids_root()
    if root is None:
        return
    try:
        names = [n for n in os.listdir(root) if n.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name.split("-")[2])
        except (ValueError, IndexError):
            continue
        if not alive(pid):
            remove(os.path.join(root, name), wait=0)
