"""Kernel-level confinement, applied by the launcher (launcher.py) before the kernel's Python starts.

Layers, strongest first (each one alone should stop the attacks the tests try):

* namespaces — a new user, network, IPC, PID and mount namespace: no network interfaces at all;
               no host SysV IPC or message queues; no host process can be named; a tmpfs scratch
               (noexec) with a size and file-count quota; a read-only, noexec view of the workspace
               that holds its documents, manifest and index and nothing else (no traces, no locks).
* Landlock   — reads only that view, scratch, the standard library (every extension module but
               ctypes, cffi and the test modules) and this package; writes only scratch (no
               execute, FIFO, socket or device rights there); no TCP; no signals or abstract
               sockets out of the sandbox.
* seccomp    — an allow-list: file I/O, memory, threads, time, polling and own-process signals;
               everything else (exec, fork, sockets, SysV IPC, inotify, memfd_create, userfaultfd,
               ptrace, mounts, namespaces, disarming the parent-death signal, ...) is refused.
* rlimits    — address space, CPU time, open files, file size, no core dumps, and threads
               (RLIMIT_NPROC where it binds: not for root) or a pids cgroup (cgroup.py).
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


def apply_rlimits(memory_bytes: int, cpu_seconds: int, max_files: int, file_bytes: int, threads: int = 0) -> None:
    """`threads` > 0 also sets RLIMIT_NPROC (tasks of this user in this user namespace)."""
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
    if threads > 0:
        lower(resource.RLIMIT_NPROC, threads)
    # Exceeding the file size limit then fails the write (EFBIG) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


# ---- kernel: namespaces, Landlock, seccomp ------------------------------------------------------

# name: (x86_64, aarch64) from the kernel's unistd headers; None where the architecture has no such
# call. Calls from 424 on have one number on every architecture.
_SYSCALLS: dict[str, tuple[int | None, int | None]] = {
    "read": (0, 63), "write": (1, 64), "newfstatat": (262, 79), "fstat": (5, 80), "lseek": (8, 62),
    "openat": (257, 56), "close": (3, 57), "mmap": (9, 222), "munmap": (11, 215), "futex": (202, 98),
    "ioctl": (16, 29), "getcwd": (79, 17), "mprotect": (10, 226), "madvise": (28, 233), "brk": (12, 214),
    "pread64": (17, 67), "pwrite64": (18, 68), "getdents64": (217, 61), "fcntl": (72, 25),
    "rt_sigaction": (13, 134), "rt_sigprocmask": (14, 135), "gettid": (186, 178), "getpid": (39, 172),
    "mremap": (25, 216), "readv": (19, 65), "writev": (20, 66), "stat": (4, None), "lstat": (6, None),
    "open": (2, None), "statx": (332, 291), "clock_gettime": (228, 113), "clock_nanosleep": (230, 115),
    "nanosleep": (35, 101), "select": (23, None), "pselect6": (270, 72), "poll": (7, None), "ppoll": (271, 73),
    "access": (21, None), "faccessat": (269, 48), "faccessat2": (439, 439), "readlink": (89, None),
    "readlinkat": (267, 78), "getdents": (78, None), "chdir": (80, 49), "fchdir": (81, 50), "mkdir": (83, None),
    "mkdirat": (258, 34), "rmdir": (84, None), "unlink": (87, None), "unlinkat": (263, 35), "rename": (82, None),
    "renameat": (264, 38), "renameat2": (316, 276), "link": (86, None), "linkat": (265, 37), "symlink": (88, None),
    "symlinkat": (266, 36), "truncate": (76, 45), "ftruncate": (77, 46), "fsync": (74, 82), "fdatasync": (75, 83),
    "fallocate": (285, 47), "flock": (73, 32), "dup": (32, 23), "dup2": (33, None), "dup3": (292, 24),
    "pipe": (22, None), "pipe2": (293, 59), "sendfile": (40, 71), "copy_file_range": (326, 285),
    "fadvise64": (221, 223), "readahead": (187, 213), "statfs": (137, 43), "fstatfs": (138, 44), "umask": (95, 166),
    "close_range": (436, 436), "openat2": (437, 437), "creat": (85, None), "preadv": (295, 69),
    "pwritev": (296, 70), "preadv2": (327, 286), "pwritev2": (328, 287), "sync_file_range": (277, 84),
    "msync": (26, 227), "mincore": (27, 232), "membarrier": (324, 283), "mseal": (462, 462),
    "map_shadow_stack": (453, 453), "set_robust_list": (273, 99), "rseq": (334, 293), "set_tid_address": (218, 96),
    "exit": (60, 93), "exit_group": (231, 94), "sched_yield": (24, 124), "sched_getaffinity": (204, 123),
    "sched_getparam": (143, 121), "sched_getscheduler": (145, 120), "sched_get_priority_max": (146, 125),
    "sched_get_priority_min": (147, 126), "sched_getattr": (315, 275), "sched_rr_get_interval": (148, 127),
    "getpriority": (140, 141), "futex_waitv": (449, 449), "futex_wake": (454, 454), "futex_wait": (455, 455),
    "futex_requeue": (456, 456), "rt_sigreturn": (15, 139), "rt_sigpending": (127, 136),
    "rt_sigtimedwait": (128, 137), "rt_sigsuspend": (130, 133), "sigaltstack": (131, 132), "alarm": (37, None),
    "setitimer": (38, 103), "getitimer": (36, 102), "pause": (34, None), "restart_syscall": (219, 128),
    "timer_create": (222, 107), "timer_settime": (223, 110), "timer_gettime": (224, 108),
    "timer_getoverrun": (225, 109), "timer_delete": (226, 111), "timerfd_create": (283, 85),
    "timerfd_settime": (286, 86), "timerfd_gettime": (287, 87), "eventfd": (284, None), "eventfd2": (290, 19),
    "signalfd": (282, None), "signalfd4": (289, 74), "clock_getres": (229, 114), "gettimeofday": (96, 169),
    "time": (201, None), "times": (100, 153), "epoll_create": (213, None), "epoll_create1": (291, 20),
    "epoll_ctl": (233, 21), "epoll_wait": (232, None), "epoll_pwait": (281, 22), "epoll_pwait2": (441, 441),
    "getppid": (110, 173), "getuid": (102, 174), "geteuid": (107, 175), "getgid": (104, 176), "getegid": (108, 177),
    "getgroups": (115, 158), "getresuid": (118, 148), "getresgid": (120, 150), "getpgid": (121, 155),
    "getpgrp": (111, None), "getsid": (124, 156), "uname": (63, 160), "sysinfo": (99, 179), "getrusage": (98, 165),
    "getrlimit": (97, 163), "getcpu": (309, 168), "getrandom": (318, 278), "capget": (125, 90),
    "arch_prctl": (158, None), "wait4": (61, 260), "waitid": (247, 95), "kill": (62, 129), "tkill": (200, 130),
    "tgkill": (234, 131), "clone": (56, 220), "clone3": (435, 435), "prlimit64": (302, 261), "prctl": (157, 167),
    "setpriority": (141, 140), "sched_setaffinity": (203, 122), "sched_setscheduler": (144, 119),
    "sched_setparam": (142, 118), "sched_setattr": (314, 274), "execveat": (322, 281), "execve": (59, 221),
    "getxattr": (191, 8), "lgetxattr": (192, 9), "fgetxattr": (193, 10), "listxattr": (194, 11),
    "llistxattr": (195, 12), "flistxattr": (196, 13), "getxattrat": (464, 464), "listxattrat": (465, 465),
    "landlock_create_ruleset": (444, 444), "landlock_add_rule": (445, 445), "landlock_restrict_self": (446, 446),
}
_ARCH = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}
_LAST_KNOWN = 470  # above this, a call newer than this table: ENOSYS, so the C library falls back

# The allow-list, most frequent first (the filter tries them in order). Everything else is refused:
# processes, exec, sockets, SysV IPC, inotify/fanotify, memfd_create, userfaultfd, io_uring, bpf,
# ptrace, mounts, namespaces, keyrings, chmod/chown/utime/xattr writes, mknod, setsid, ...
_ALLOWED = (
    "newfstatat", "read", "mmap", "futex", "lseek", "openat", "close", "ioctl", "getcwd", "munmap", "write", "fstat",
    "mprotect", "madvise", "brk", "pread64", "pwrite64", "getdents64", "fcntl", "rt_sigaction", "rt_sigprocmask",
    "gettid", "getpid", "mremap", "readv", "writev", "stat", "lstat", "open", "statx", "clock_gettime",
    "clock_nanosleep", "nanosleep", "select", "pselect6", "poll", "ppoll", "access", "faccessat", "faccessat2",
    "readlink", "readlinkat", "getdents", "chdir", "fchdir", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat",
    "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "truncate", "ftruncate", "fsync",
    "fdatasync", "fallocate", "flock", "dup", "dup2", "dup3", "pipe", "pipe2", "sendfile", "copy_file_range",
    "fadvise64", "readahead", "statfs", "fstatfs", "umask", "close_range", "openat2", "creat", "preadv", "pwritev",
    "preadv2", "pwritev2", "sync_file_range", "msync", "mincore", "membarrier", "mseal", "map_shadow_stack",
    "set_robust_list", "rseq", "set_tid_address", "exit", "exit_group", "sched_yield", "sched_getaffinity",
    "sched_getparam", "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min", "sched_getattr",
    "sched_rr_get_interval", "getpriority", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
    "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait", "rt_sigsuspend", "sigaltstack", "alarm", "setitimer",
    "getitimer", "pause", "restart_syscall", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
    "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime", "eventfd", "eventfd2", "signalfd",
    "signalfd4", "clock_getres", "gettimeofday", "time", "times", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "getppid", "getuid", "geteuid", "getgid", "getegid", "getgroups",
    "getresuid", "getresgid", "getpgid", "getpgrp", "getsid", "uname", "sysinfo", "getrusage", "getrlimit",
    "getcpu", "getrandom", "capget", "arch_prctl", "wait4", "waitid",
)
# Reading extended attributes: "not supported" (shutil then copies without them) rather than a
# path-based read that Landlock does not cover.
_NO_XATTRS = ("getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr", "getxattrat",
              "listxattrat")
# prctl options a Python process uses (PR_GET_*, naming threads and mappings); never
# PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_PTRACER, PR_SET_MM, PR_SET_CHILD_SUBREAPER, ...
_PRCTL_OPTIONS = (2, 3, 7, 15, 16, 21, 23, 30, 39, 42, 0x53564D41)
_CLONE_THREAD, _CLONE_NEW_ANY = 0x00010000, 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


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


def parent_death_signal(parent_pid: int | None, lifeline: int) -> None:
    """SIGKILL this process when its parent dies (kept across execve). `parent_pid` None: the
    parent is in another PID namespace, so only the lifeline (a pipe whose writer is the `rlm`
    process) can tell whether it died before the signal was armed."""
    import select

    libc = _libc()
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)  # the parent died before the signal was armed
    poller = select.poll()
    poller.register(lifeline, 0)  # only POLLHUP/POLLERR: the writer is gone
    if poller.poll(0):
        os._exit(0)


_CLONE_NEWUSER, _CLONE_NEWNET, _CLONE_NEWNS = 0x10000000, 0x40000000, 0x00020000
_CLONE_NEWIPC, _CLONE_NEWPID = 0x08000000, 0x20000000
_NAMESPACES = {"netns": _CLONE_NEWNET, "mountns": _CLONE_NEWNS, "ipcns": _CLONE_NEWIPC, "pidns": _CLONE_NEWPID}


def enter_namespaces(wanted: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """A new user namespace (so no privilege is needed) with the `wanted` ones among netns,
    mountns, ipcns and pidns; returns (made, problems). A kernel that refuses the whole set is
    asked again without pidns and ipcns, then without mountns; without netns nothing is made.

    Our uid and gid are mapped to themselves (to 1000 when they are 0): files we create in the
    sandbox's tmpfs need a mapped owner, and as a non-zero uid the kernel's interpreter holds no
    capability after exec. A new PID namespace holds only our next child (the launcher forks)."""
    import ctypes

    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    tries = [tuple(wanted), tuple(n for n in wanted if n not in ("pidns", "ipcns")), ("netns",)]
    made: tuple[str, ...] = ()
    problems: list[str] = []
    for names in dict.fromkeys(tries):
        flags = _CLONE_NEWUSER
        for name in names:
            flags |= _NAMESPACES[name]
        if libc.unshare(flags) == 0:
            made = names
            break
        err = ctypes.get_errno()
        problems.append(f"{'+'.join(names)}: unshare: {os.strerror(err)}")
    else:
        raise OSError(problems[-1] if problems else "unshare failed")
    try:
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        with open("/proc/self/uid_map", "w") as fh:
            fh.write(f"{uid or 1000} {uid} 1")
        with open("/proc/self/gid_map", "w") as fh:
            fh.write(f"{gid or 1000} {gid} 1")
    except OSError:
        if "mountns" in made:
            raise
    missing = [n for n in wanted if n not in made]
    return list(made), [f"{n}: refused by this kernel" for n in missing] if missing else []


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
    """A private tmpfs: writes beyond its size or file count fail with ENOSPC in model code, and
    nothing written there can be mapped executable (no library model code writes ever loads)."""
    _mount("tmpfs", scratch, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
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
        for flags in (_MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, _MS_RDONLY):
            try:
                _mount(None, target, None, _MS_REMOUNT | _MS_BIND | flags | _locked_flags(target))
                break
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
_FS_MAKE_CHAR, _FS_MAKE_SOCK, _FS_MAKE_FIFO, _FS_MAKE_BLOCK = 1 << 6, 1 << 9, 1 << 10, 1 << 11
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
SCRATCH = -1  # every right the ABI handles but executing and making devices, sockets and FIFOs
_NOT_IN_SCRATCH = _FS_EXECUTE | _FS_MAKE_CHAR | _FS_MAKE_SOCK | _FS_MAKE_FIFO | _FS_MAKE_BLOCK


def apply_landlock(rules: list[tuple[str, int]]) -> int:
    """Restrict this process's file access (and TCP, signals) to `rules` — (path, READ | LIST |
    EXEC | SCRATCH) — for good; returns the ABI used. Missing paths are skipped."""
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
            rights = fs & ~_NOT_IN_SCRATCH if wanted == SCRATCH else wanted
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


def apply_seccomp(own_pid: int) -> None:
    """Allow only the system calls a Python process running model code needs (`_ALLOWED`), some
    with their arguments checked; refuse the rest with EPERM. `own_pid` is this process as it
    sees itself (1 in a new PID namespace): the one target of its signals. The one exec allowed
    is execveat of descriptor EXEC_FD, the launcher's own exec into the kernel."""
    import ctypes

    machine = os.uname().machine
    if machine not in _ARCH:
        raise OSError(f"no seccomp syscall table for {machine}")
    audit_arch = _ARCH[machine][1]
    eperm, enosys, enotsup = 0x00050000 | 1, 0x00050000 | 38, 0x00050000 | 95  # SECCOMP_RET_ERRNO | errno
    allow = 0x7FFF0000
    Insn = tuple[int, int, int, int]

    def stmt(code: int, k: int) -> Insn:
        return (code, 0, 0, k)

    def jump(code: int, k: int, jt: int, jf: int) -> Insn:
        return (code, jt, jf, k)

    ld_w_abs, jeq, jgt, jge, jset, ret = 0x20, 0x15, 0x25, 0x35, 0x45, 0x06

    def arg(i: int) -> Insn:  # the low word of argument i (little-endian)
        return stmt(ld_w_abs, 16 + 8 * i)

    def call(name: str, body: list[Insn]) -> list[Insn]:
        """`body` (which must end in a return) for system call `name`; skipped for any other."""
        nr = _nr(name)
        return [jump(jeq, nr, 0, len(body)), *body] if nr is not None else []

    def arg_is(i: int, value: int) -> list[Insn]:
        return [arg(i), jump(jeq, value, 0, 1), stmt(ret, allow), stmt(ret, eperm)]

    prog: list[Insn] = [stmt(ld_w_abs, 4), jump(jeq, audit_arch, 1, 0), stmt(ret, eperm), stmt(ld_w_abs, 0)]
    if machine == "x86_64":
        prog += [jump(jge, 0x40000000, 0, 1), stmt(ret, eperm)]  # the x32 ABI: refuse
    for nr in (_nr(name) for name in _ALLOWED):
        if nr is not None:
            prog += [jump(jeq, nr, 0, 1), stmt(ret, allow)]
    prog += call("clone", [arg(0), jump(jset, _CLONE_NEW_ANY, 2, 0), jump(jset, _CLONE_THREAD, 0, 1),
                           stmt(ret, allow), stmt(ret, eperm)])  # threads yes; processes and namespaces no
    prog += call("clone3", [stmt(ret, enosys)])  # glibc then falls back to clone
    options = [insn for option in _PRCTL_OPTIONS for insn in (jump(jeq, option, 0, 1), stmt(ret, allow))]
    prog += call("prctl", [arg(0), *options, stmt(ret, eperm)])
    for name in ("kill", "tkill", "tgkill"):  # signals only to ourselves
        prog += call(name, arg_is(0, own_pid))
    prog += call("setpriority", arg_is(1, 0))  # who == 0: this process
    for name in ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr"):
        prog += call(name, arg_is(0, 0))  # pid == 0: this thread
    prog += call("execveat", arg_is(0, EXEC_FD))
    # prlimit64: reading limits (new_limit == NULL, args[2]) yes, setting no
    prog += call("prlimit64", [arg(2), jump(jeq, 0, 0, 3), stmt(ld_w_abs, 36), jump(jeq, 0, 0, 1), stmt(ret, allow),
                               stmt(ret, eperm)])
    for name in _NO_XATTRS:
        prog += call(name, [stmt(ret, enotsup)])
    prog += [jump(jgt, _LAST_KNOWN, 0, 1), stmt(ret, enosys), stmt(ret, eperm)]
    if len(prog) > 4096:
        raise OSError("seccomp program too long")
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
