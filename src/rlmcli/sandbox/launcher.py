"""The sandbox launcher: confine this process, then exec the kernel in a fresh interpreter.

Started by `process.Sandbox` as `python -I -S launcher.py CONFIG_JSON`. Everything that needs
ctypes (namespaces, mounts, Landlock, seccomp, the parent-death signal) happens here; then the
process replaces itself with `python -I -S kernel.py`, which inherits every layer and never loads
ctypes. A failure is reported to the parent as a `fatal` frame on the channel.

With a new PID namespace the launcher forks once: the child (PID 1 of the namespace) confines
itself and becomes the kernel; the launcher stays behind only to wait for it and end the same way
(exit status or signal), so the parent sees the kernel's death as its own child's.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, NoReturn

if __name__ == "__main__":  # run by path with -I: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from rlmcli.sandbox import guard, protocol

WORLD_PARTS = ("docs", "manifest.json", "index.sqlite")


def _reach_exec_fd() -> None:
    """Under a low `ulimit -n` descriptor EXEC_FD cannot be made: raise the soft limit (the hard
    one allowing), or say what is needed. apply_rlimits lowers it again before any model code."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft <= guard.EXEC_FD:
        if hard != resource.RLIM_INFINITY and hard <= guard.EXEC_FD:
            raise RuntimeError(f"the open-files limit is {hard} (ulimit -n); the sandbox needs at least "
                               f"{guard.EXEC_FD + 1}: raise it (ulimit -n 4096) before starting rlm")
        resource.setrlimit(resource.RLIMIT_NOFILE, (guard.EXEC_FD + 1, hard))


def namespaces(cfg: dict[str, Any], problems: list[str]) -> list[str]:
    """Enter the namespaces this level wants and the kernel allows; returns those made."""
    disabled = set(cfg["disable"])
    if cfg["level"] == "basic":
        return []
    if "netns" in disabled:
        problems.append("netns: disabled")
        return []
    wanted = ("netns",) + tuple(n for n in ("mountns", "ipcns", "pidns") if n not in disabled)
    problems += [f"{n}: disabled" for n in ("mountns", "ipcns", "pidns") if n in disabled]
    try:
        made, refused = guard.enter_namespaces(wanted)
    except OSError as exc:
        problems.append(f"netns: {exc}")
        return []
    problems += refused
    return made


def confine(cfg: dict[str, Any], made: list[str], layers: list[str], problems: list[str]) -> dict[str, Any]:
    """Apply the remaining layers in this process; returns the kernel's configuration."""
    disabled = set(cfg["disable"])
    workspace, world, scratch = cfg["workspace"], cfg["world"], cfg["scratch"]
    cwd = workspace
    read_roots = [os.path.join(workspace, p) for p in WORLD_PARTS]
    quota_by_kernel = False
    layers += [n for n in ("netns", "ipcns", "pidns") if n in made]
    if "mountns" in made:
        try:
            guard.private_mounts()
            guard.mount_scratch(scratch, cfg["scratch_bytes"], cfg["scratch_files"])
            quota_by_kernel = True
            shown = guard.mount_world(world, workspace, WORLD_PARTS)
            cwd, read_roots = world, shown
            layers.append("mountns")
        except OSError as exc:
            problems.append(f"mountns: {exc}")
    if cfg["level"] != "basic":
        if "landlock" in disabled:
            problems.append("landlock: disabled")
        else:
            rules = [(path, guard.READ) for path in read_roots] + [(cwd, guard.LIST), (scratch, guard.SCRATCH)]
            rules += [(path, getattr(guard, right)) for path, right in cfg["python_rules"]]
            try:
                layers.append(f"landlock-v{guard.apply_landlock(rules)}")
            except OSError as exc:
                problems.append(f"landlock: {exc}")
    _reach_exec_fd()
    fd = os.open(cfg["python"], os.O_RDONLY | os.O_CLOEXEC)
    os.dup2(fd, guard.EXEC_FD, inheritable=False)  # before the open-files limit makes 1000 unreachable
    os.close(fd)
    file_bytes = cfg["file_bytes"] if quota_by_kernel else min(cfg["file_bytes"], cfg["scratch_bytes"])
    # RLIMIT_NPROC counts this user's tasks in this user namespace (so only where we made one),
    # and the kernel never applies it to root: there the pids cgroup, if any, counts threads.
    nproc = cfg["max_threads"] + 2 if made and cfg["host_uid"] != 0 else 0  # + the launcher and main thread
    guard.apply_rlimits(cfg["memory_bytes"], cfg["cpu_seconds"], cfg["max_files"], file_bytes, nproc)
    if nproc:
        layers.append("nproc")
    if cfg["level"] != "basic":
        if "seccomp" in disabled:
            problems.append("seccomp: disabled")
        else:
            try:
                guard.apply_seccomp(os.getpid())
                layers.append("seccomp")
            except OSError as exc:
                problems.append(f"seccomp: {exc}")
        kernel_fs = any(layer.startswith("landlock") for layer in layers)
        kernel_net = "netns" in layers or "seccomp" in layers
        if cfg["level"] == "strict" and not (kernel_fs and kernel_net):
            raise RuntimeError("strict sandbox needs kernel-enforced filesystem and network isolation; "
                               + "; ".join(problems))
    return {**cfg, "cwd": cwd, "read_roots": read_roots, "layers": layers, "problems": problems,
            "quota_by_kernel": quota_by_kernel, "hide": cwd == workspace}


def relay(child: int, cfg: dict[str, Any]) -> NoReturn:
    """Wait for the kernel (our child, PID 1 of its namespace) and end as it ended. As a
    namespace's first process it ignores the soft CPU limit's SIGXCPU and dies of the hard
    limit's SIGKILL a second later; that death is reported as the SIGXCPU it was."""
    for fd in (cfg["rfd"], cfg["wfd"], cfg["lifeline"]):
        os.close(fd)  # the parent sees the kernel's end of the channel close with the kernel
    # Sandbox.interrupt signals this process: the running cell, in the kernel, is the one to stop.
    signal.signal(signal.SIGINT, lambda *_: os.kill(child, signal.SIGINT))
    _, status, usage = os.wait4(child, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL and usage.ru_utime + usage.ru_stime >= cfg["cpu_seconds"]:
            sig = signal.SIGXCPU
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def main() -> None:
    cfg = json.loads(sys.argv[1])
    layers: list[str] = ["rlimits"]
    problems: list[str] = []
    try:
        guard.parent_death_signal(cfg["parent_pid"], cfg["lifeline"])
        if cfg.get("cgroup"):
            # The parent moved us into our pids cgroup while this interpreter started (a cgroup v1
            # move can wait ~15 ms for the kernel); it says whether that worked before we fork.
            moved = protocol.recv(cfg["rfd"], deadline=time.monotonic() + 10)
            if moved.get("type") == "cgroup" and moved.get("joined") is True:
                layers.append("pids-cgroup")
            else:
                problems.append(f"pids-cgroup: {moved.get('error', 'not joined')}")
        made = namespaces(cfg, problems)
        if "pidns" in made:
            child = os.fork()
            if child:
                relay(child, cfg)
            guard.parent_death_signal(None, cfg["lifeline"])  # now of the launcher that waits for us
        kernel_cfg = confine(cfg, made, layers, problems)
        argv = [cfg["python"], "-I", "-S", cfg["kernel"], json.dumps(kernel_cfg)]
        guard.execveat(guard.EXEC_FD, argv, cfg["env"])
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names it
        detail = f" (layers: {', '.join(layers)}{'; ' + '; '.join(problems) if problems else ''})"
        try:
            protocol.send(cfg["wfd"], {"type": "fatal", "error": f"{exc}{detail}"})
        finally:
            os._exit(3)


if __name__ == "__main__":
    main()
