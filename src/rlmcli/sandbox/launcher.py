"""The sandbox launcher: confine this process, then exec the kernel in a fresh interpreter.

Started by `process.Sandbox` as `python -I -S launcher.py CONFIG_JSON`. Everything that needs
ctypes (namespaces, mounts, Landlock, seccomp, the parent-death signal) happens here; then the
process replaces itself with `python -I -S kernel.py`, which inherits every layer and never loads
ctypes. A failure is reported to the parent as a `fatal` frame on the channel.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

if __name__ == "__main__":  # run by path with -I: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from rlmcli.sandbox import guard, protocol  # noqa: E402

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


def confine(cfg: dict[str, Any]) -> dict[str, Any]:
    """Apply the layers; returns the kernel's configuration (where it works, what holds)."""
    layers: list[str] = ["rlimits"]
    problems: list[str] = []
    disabled = set(cfg["disable"])
    workspace, world, scratch = cfg["workspace"], cfg["world"], cfg["scratch"]
    cwd = workspace
    read_roots = [os.path.join(workspace, p) for p in WORLD_PARTS]
    quota_by_kernel = False
    guard.parent_death_signal(cfg["parent_pid"])
    if cfg["level"] != "basic":
        mounts = False
        if "netns" in disabled:
            problems.append("netns: disabled")
        else:
            try:
                mounts = guard.enter_namespaces(mounts="mountns" not in disabled)
                layers.append("netns")
            except OSError as exc:
                problems.append(f"netns: {exc}")
        if mounts:
            try:
                guard.private_mounts()
                guard.mount_scratch(scratch, cfg["scratch_bytes"], cfg["scratch_files"])
                quota_by_kernel = True
                shown = guard.mount_world(world, workspace, WORLD_PARTS)
                cwd, read_roots = world, shown
                layers.append("mountns")
            except OSError as exc:
                problems.append(f"mountns: {exc}")
        if "landlock" in disabled:
            problems.append("landlock: disabled")
        else:
            rules = [(path, guard.READ) for path in read_roots] + [(cwd, guard.LIST), (scratch, guard.WRITE)]
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
    guard.apply_rlimits(cfg["memory_bytes"], cfg["cpu_seconds"], cfg["max_files"], file_bytes)
    if cfg["level"] != "basic":
        if "seccomp" in disabled:
            problems.append("seccomp: disabled")
        else:
            try:
                guard.apply_seccomp()
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


def main() -> None:
    cfg = json.loads(sys.argv[1])
    kernel_cfg: dict[str, Any] = {}
    try:
        kernel_cfg = confine(cfg)
        argv = [cfg["python"], "-I", "-S", cfg["kernel"], json.dumps(kernel_cfg)]
        guard.execveat(guard.EXEC_FD, argv, cfg["env"])
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names it
        layers = ", ".join(kernel_cfg.get("layers", [])) or "none"
        problems = "; ".join(kernel_cfg.get("problems", []))
        detail = f" (layers: {layers}{'; ' + problems if problems else ''})" if kernel_cfg else ""
        try:
            protocol.send(cfg["wfd"], {"type": "fatal", "error": f"{exc}{detail}"})
        finally:
            os._exit(3)


if __name__ == "__main__":
    main()
