"""Kernel-level confinement, applied by the launcher (launcher.py) before the kernel's Python starts.

Layers, strongest first (each one alone should stop the attacks the tests try):

* namespaces — a new user, network and mount namespace: no network interfaces at all; a tmpfs
               scratch with a size and file-count quota; a read-only view of the workspace that
               holds its documents, manifest and index and nothing else (no traces, no locks).
* Landlock   — reads only that view, scratch, the standard library (every extension module but
               ctypes, cffi and the test modules) and this package; writes only scratch; no TCP;
               no signals or abstract sockets out of the sandbox.
* seccomp    — no execve, fork, sockets, ptrace, raising limits, namespaces, mounts, ...
* rlimits    — address space, CPU time, open files, file size, no core dumps.
* audit      — a Python audit hook in the kernel that refuses the same actions with readable
               errors (audit.py); at `basic` it stands alone with the rlimits.

The launcher uses ctypes for these system calls and then execs a fresh interpreter, so the
process that runs model code never has ctypes loaded and cannot load it (its file is unreadable).
"""

from __future__ import annotations

import os
import resource
import signal
import struct
from typing import Any

# ---- rlimits ---------------------------------------------------------------------------------


def apply_rlimits(memory_bytes: int, cpu_seconds: int, max_files: int, file_bytes: int) -> None:
    def lower(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    lower(resource.RLIMIT_AS, memory_bytes)
    # soft < hard: the soft limit sends SIGXCPU (a nameable death), the hard one SIGKILL a second later
    soft_cpu, hard_cpu = resource.getrlimit(resource.RLIMIT_CPU)
    cap = cpu_seconds + 1 if hard_cpu == resource.RLIM_INFINITY else min(cpu_seconds + 1, hard_cpu)
    resource.setrlimit(resource.RLIMIT_CPU, (min(cpu_seconds, cap), cap))
    lower(resource.RLIMIT_NOFILE, max_files)
    lower(resource.RLIMIT_FSIZE, file_bytes)
    lower(resource.RLIMIT_CORE, 0)
    # Exceeding the file size limit then fails the write (EFBIG) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


# ---- kernel: namespaces, Landlock, seccomp ------------------------------------------------------

_SYSCALLS = {
    # name: (x86_64, aarch64); None where the architecture has no such call
    "landlock_create_ruleset": (444, 444), "landlock_add_rule": (445, 445), "landlock_restrict_self": (446, 446),
    "execve": (59, 221), "execveat": (322, 281), "fork": (57, None), "vfork": (58, None),
    "clone": (56, 220), "clone3": (435, 435), "socket": (41, 198), "socketpair": (53, 199),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131), "setrlimit": (160, 164),
    "prlimit64": (302, 261), "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40),
    "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51), "bpf": (321, 280),
    "perf_event_open": (298, 241), "userfaultfd": (323, 282), "io_uring_setup": (425, 425),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "init_module": (175, 105), "finit_module": (313, 273), "kexec_load": (246, 104),
    "pidfd_open": (434, 434), "pidfd_send_signal": (424, 424), "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240),
    # metadata that Landlock does not cover
    "chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53), "fchmodat2": (452, 452),
    "chown": (92, None), "fchown": (93, 55), "lchown": (94, None), "fchownat": (260, 54),
    "utime": (132, None), "utimes": (235, None), "utimensat": (280, 88), "futimesat": (261, None),
    "setxattr": (188, 5), "lsetxattr": (189, 6), "fsetxattr": (190, 7), "removexattr": (197, 14),
    "lremovexattr": (198, 15), "fremovexattr": (199, 16),
}
_ARCH = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}


def _nr(name: str) -> int | None:
    machine = os.uname().machine
    if machine not in _ARCH:
        return None
    return _SYSCALLS[name][_ARCH[machine][0]]


def _libc() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def _no_new_privs(libc: Any) -> None:
    import ctypes

    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def parent_death_signal(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (kept across execve)."""
    libc = _libc()
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(0)


def enter_namespaces(mounts: bool) -> bool:
    """A new user namespace (so no privilege is needed) with a new, empty network namespace and,
    when `mounts`, a new mount namespace; returns whether the mount namespace was made.

    Our uid and gid are mapped to themselves (to 1000 when they are 0): files we create in the
    sandbox's tmpfs need a mapped owner, and as a non-zero uid the kernel's interpreter holds no
    capability after exec."""
    import ctypes

    libc = _libc()
    clone_newuser, clone_newnet, clone_newns = 0x10000000, 0x40000000, 0x00020000
    uid, gid = os.getuid(), os.getgid()
    made_mounts = mounts and libc.unshare(clone_newuser | clone_newnet | clone_newns) == 0
    if not made_mounts and libc.unshare(clone_newuser | clone_newnet) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(err)}")
    try:
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        with open("/proc/self/uid_map", "w") as fh:
            fh.write(f"{uid or 1000} {uid} 1")
        with open("/proc/self/gid_map", "w") as fh:
            fh.write(f"{gid or 1000} {gid} 1")
    except OSError:
        if made_mounts:
            raise
    return made_mounts


_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    import ctypes

    libc = _libc()

    def enc(value: str | None) -> bytes | None:
        return value.encode() if value is not None else None

    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _locked_flags(path: str) -> int:
    """Flags a remount inside a user namespace must keep (the kernel locks them)."""
    st = os.statvfs(path).f_flag
    return sum(flag for flag in (_MS_NOSUID, _MS_NODEV, _MS_NOEXEC) if st & flag)


def private_mounts() -> None:
    """Nothing mounted in our namespace propagates back to the host."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)


def mount_scratch(scratch: str, size_bytes: int, max_files: int) -> None:
    """A private tmpfs: writes beyond its size or file count fail with ENOSPC in model code."""
    _mount("tmpfs", scratch, "tmpfs", _MS_NOSUID | _MS_NODEV,
           f"size={max(size_bytes, 1 << 20)},nr_inodes={max(max_files, 16)},mode=0700")


def mount_world(world: str, workspace: str, parts: tuple[str, ...]) -> list[str]:
    """A read-only view at `world` holding only `parts` of the workspace; returns those mounted."""
    _mount("tmpfs", world, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755")
    shown = []
    for name in parts:
        source = os.path.join(workspace, name)
        target = os.path.join(world, name)
        if os.path.isdir(source):
            os.mkdir(target)
        elif os.path.isfile(source):
            open(target, "w").close()
        else:
            continue
        _mount(source, target, None, _MS_BIND | _MS_REC)
        try:
            _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _locked_flags(target))
        except OSError:
            pass  # Landlock denies writes there anyway
        shown.append(target)
    _mount(None, world, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
           "size=64k,nr_inodes=64,mode=0755")
    return shown


def execveat(fd: int, argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with the program open at `fd` (never returns on success)."""
    import ctypes

    def strings(items: list[str]) -> Any:
        array = (ctypes.c_char_p * (len(items) + 1))()
        array[:-1] = [i.encode() for i in items]
        array[-1] = None
        return array

    libc = _libc()
    argv_c, env_c = strings(argv), strings([f"{k}={v}" for k, v in env.items()])
    libc.syscall(_nr("execveat"), fd, b"", argv_c, env_c, 0x1000)  # AT_EMPTY_PATH
    err = ctypes.get_errno()
    raise OSError(err, f"execveat: {os.strerror(err)}")


# Landlock access rights (linux/landlock.h)
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ALL_V1 = (1 << 13) - 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1


def landlock_abi() -> int:
    nr = _nr("landlock_create_ruleset")
    if nr is None:
        return 0
    try:
        abi = _libc().syscall(nr, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    except OSError:
        return 0
    return max(int(abi), 0)


READ = _FS_READ_FILE | _FS_READ_DIR | _FS_EXECUTE
LIST = _FS_READ_DIR
EXEC = _FS_READ_FILE | _FS_EXECUTE
WRITE = -1  # every right the ABI handles


def apply_landlock(rules: list[tuple[str, int]]) -> int:
    """Restrict this process's file access (and TCP, signals) to `rules` — (path, READ | LIST |
    EXEC | WRITE) — for good; returns the ABI used. Missing paths are skipped."""
    import ctypes

    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    libc = _libc()
    fs = _FS_ALL_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    fs |= _FS_IOCTL_DEV if abi >= 5 else 0
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", fs, net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", fs, net)
    else:
        attr = struct.pack("=Q", fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_nr("landlock_create_ruleset"), buf, len(attr), 0)
    if ruleset < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    file_rights = _FS_READ_FILE | _FS_WRITE_FILE | _FS_EXECUTE | (_FS_TRUNCATE if abi >= 3 else 0)
    try:
        for path, wanted in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            rights = fs if wanted == WRITE else wanted
            allowed = rights if os.path.isdir(path) else rights & file_rights
            if not allowed:
                os.close(fd)
                continue
            rule = ctypes.create_string_buffer(struct.pack("=Qi", allowed, fd), 12)
            res = libc.syscall(_nr("landlock_add_rule"), ruleset, 1, rule, 0)  # PATH_BENEATH
            os.close(fd)
            if res != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"landlock_add_rule({path}): {os.strerror(err)}")
        _no_new_privs(libc)
        if libc.syscall(_nr("landlock_restrict_self"), ruleset, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(ruleset)
    return abi


EXEC_FD = 1000  # the one descriptor execveat may run: above the kernel's open-files limit, so
# model code can never put anything there


def apply_seccomp() -> None:
    """Refuse (EPERM) the system calls model code never needs; threads keep working. The one
    exception is execveat of descriptor EXEC_FD, the launcher's own exec into the kernel."""
    import ctypes

    machine = os.uname().machine
    if machine not in _ARCH:
        raise OSError(f"no seccomp syscall table for {machine}")
    audit_arch = _ARCH[machine][1]
    eperm = 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
    enosys = 0x00050000 | 38
    allow = 0x7FFF0000
    pid = os.getpid()

    def stmt(code: int, k: int) -> tuple[int, int, int, int]:
        return (code, 0, 0, k)

    def jump(code: int, k: int, jt: int, jf: int) -> tuple[int, int, int, int]:
        return (code, jt, jf, k)

    ld_w_abs, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    blocked = [n for n in (_nr(s) for s in (
        "execve", "fork", "vfork", "socket", "socketpair", "ptrace", "process_vm_readv",
        "process_vm_writev", "setrlimit", "unshare", "setns", "mount", "umount2",
        "pivot_root", "chroot", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "keyctl",
        "add_key", "request_key", "init_module", "finit_module", "kexec_load", "pidfd_open",
        "pidfd_send_signal", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "chmod", "fchmod", "fchmodat",
        "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes", "utimensat", "futimesat",
        "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr")) if n is not None]
    own_pid_only = [n for n in (_nr(s) for s in ("kill", "tkill", "tgkill")) if n is not None]
    prog: list[tuple[int, int, int, int]] = [
        stmt(ld_w_abs, 4), jump(jeq, audit_arch, 1, 0), stmt(ret, eperm),
        stmt(ld_w_abs, 0), jump(jge, 0x40000000, 0, 1), stmt(ret, eperm),  # x32 ABI: refuse
    ]
    for n in blocked:
        prog += [jump(jeq, n, 0, 1), stmt(ret, eperm)]
    prog += [jump(jeq, _nr("clone3") or 0, 0, 1), stmt(ret, enosys)]  # glibc falls back to clone
    # execveat: only of EXEC_FD (arg0, the low word at offset 16)
    prog += [jump(jeq, _nr("execveat") or 0, 0, 4), stmt(ld_w_abs, 16), jump(jeq, EXEC_FD, 0, 1), stmt(ret, allow),
             stmt(ret, eperm)]
    # prlimit64: reading limits (new_limit == NULL, args[2] at offset 32) yes, setting no
    prog += [jump(jeq, _nr("prlimit64") or 0, 0, 6), stmt(ld_w_abs, 32), jump(jeq, 0, 0, 3), stmt(ld_w_abs, 36),
             jump(jeq, 0, 0, 1), stmt(ret, allow), stmt(ret, eperm)]
    # clone: threads (CLONE_THREAD) yes, new processes no
    prog += [jump(jeq, _nr("clone") or 0, 0, 4), stmt(ld_w_abs, 16), jump(jset, 0x00010000, 0, 1), stmt(ret, allow),
             stmt(ret, eperm)]
    for n in own_pid_only:  # signals only to ourselves (arg0 == our pid)
        prog += [jump(jeq, n, 0, 4), stmt(ld_w_abs, 16), jump(jeq, pid, 0, 1), stmt(ret, allow), stmt(ret, eperm)]
    prog.append(stmt(ret, allow))
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    filters = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(filters, ctypes.c_void_p))
    libc = _libc()
    _no_new_privs(libc)
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
