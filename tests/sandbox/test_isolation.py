"""One test per escape attempt. Each runs against three configurations where it applies:

* full        — every layer (what `--sandbox auto` gives on this machine);
* audit-only  — `--sandbox basic`: the Python audit hook and rlimits;
* kernel-only — namespaces, Landlock and seccomp with the audit hook switched off, proving the
                kernel boundary holds by itself.

Each asserts that the action failed, that nothing happened outside, and that the next cell runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmcli.sandbox import Sandbox, SandboxError
from rlmcli.sandbox.process import SandboxLimits
from tests.sandbox.conftest import KERNEL, make_sandbox, tree_digest

CONFIGS = {"full": ("auto", ()), "audit-only": ("basic", ()), "kernel-only": ("strict", ("audit",))}


def _make(workspace: Path, config: str, **limits: object) -> Sandbox:
    return make_sandbox(workspace, config, **limits)


@pytest.fixture(params=list(CONFIGS))
def guarded(request: pytest.FixtureRequest, workspace: Path) -> Iterator[Sandbox]:
    sb = _make(workspace, request.param)
    try:
        yield sb
    finally:
        sb.close()


def _still_works(sb: Sandbox) -> None:
    result = sb.run("print('alive', 6 * 7)")
    assert result.stdout == "alive 42\n" and not result.restarted


def test_layers_are_reported(workspace: Path) -> None:
    with Sandbox(workspace) as sb:
        assert sb.layers[0] == "rlimits" and sb.layers[-1] == "audit"
        if KERNEL:
            assert "netns" in sb.layers and "seccomp" in sb.layers
            assert any(layer.startswith("landlock-v") for layer in sb.layers)


def test_strict_refuses_to_run_without_a_kernel_boundary(workspace: Path) -> None:
    sb = Sandbox(workspace, level="strict", disable=("landlock", "netns", "seccomp"))
    with pytest.raises(SandboxError, match="strict sandbox needs kernel-enforced"):
        sb.start()
    sb.close()


def test_environment_is_scrubbed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"OPENAI_API_KEY": "sk-live-123", "ANTHROPIC_API_KEY": "sk-ant-9", "AWS_SECRET_ACCESS_KEY": "aws",
               "GITHUB_TOKEN": "ghp_x", "HTTPS_PROXY": "http://proxy:3128", "http_proxy": "http://p", "MY_PASSWORD": "pw"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    with Sandbox(workspace) as sb:
        result = sb.run("import os\nprint(sorted(os.environ))\nprint(any(v in str(os.environ) for v in "
                        f"{list(secrets.values())!r}))")
    keys, leaked = result.stdout.splitlines()
    assert eval(keys) == ["HOME", "LANG", "LC_ALL", "PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "TMPDIR"]
    assert leaked == "False"


@pytest.mark.parametrize("code", [
    "import socket\ns = socket.create_connection(('127.0.0.1', PORT), timeout=2)\ns.sendall(b'leak')",
    "import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', PORT))",
    "import socket\nprint(socket.getaddrinfo('localhost', PORT))\nsocket.socket().bind(('127.0.0.1', 0))",
    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:PORT/', timeout=2)",
])
def test_no_network(guarded: Sandbox, code: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.3)
    port = listener.getsockname()[1]
    try:
        result = guarded.run(code.replace("PORT", str(port)))
        assert result.error, result.stdout
        assert any(s in result.stderr for s in ("network access is disabled", "not available in the rlm sandbox",
                                                  "Operation not permitted", "Network is unreachable",
                                                  "failure in name resolution"))
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()
    _still_works(guarded)


@pytest.mark.parametrize("code", [
    "import subprocess\nsubprocess.run(['touch', MARKER])",
    "import os\nrc = os.system('touch ' + MARKER)\nassert rc == 0, rc",
    "import os\npid = os.fork()\nif pid == 0:\n    open(MARKER, 'w').close()\n    os._exit(0)",
    "import os\nos.execv('/usr/bin/touch', ['touch', MARKER])",
    "import os\nos.posix_spawn('/usr/bin/touch', ['touch', MARKER], {})",
    "import pty\npty.spawn(['touch', MARKER])",
    "import multiprocessing\np = multiprocessing.Process(target=open, args=(MARKER, 'w'))\np.start()\np.join()",
])
def test_no_new_processes(guarded: Sandbox, code: str, tmp_path: Path) -> None:
    marker = tmp_path / "spawned"
    result = guarded.run(code.replace("MARKER", repr(str(marker))))
    assert result.error, result.stdout
    assert not marker.exists()
    _still_works(guarded)


@pytest.mark.parametrize("config", ["full", "audit-only"])
@pytest.mark.parametrize("code", ["import ctypes\nctypes.CDLL(None).system(b'true')", "import _ctypes", "import cffi",
                                  "import _posixsubprocess"])
def test_no_ctypes_cffi_or_posixsubprocess(workspace: Path, config: str, code: str) -> None:
    with _make(workspace, config) as sb:
        result = sb.run(code)
        assert result.error and "is not available in the rlm sandbox" in result.stderr
        _still_works(sb)


@pytest.mark.parametrize("config", ["full", "audit-only"])
def test_no_native_modules_from_outside_the_installation(workspace: Path, config: str) -> None:
    import importlib

    ext = sysconfig.get_config_var("EXT_SUFFIX")
    # A stdlib extension module file, or tiktoken's (a dependency, always a file) on a Python
    # that builds its own modules in.
    candidates = ("_csv", "_json", "array", "_bisect", "tiktoken._tiktoken")
    found = [(n, getattr(importlib.import_module(n), "__file__", "") or "") for n in candidates]
    name, source = next((n, f) for n, f in found if f.endswith(ext))
    with _make(workspace, config) as sb:
        # model code writes the module into scratch itself (the parent cannot see a tmpfs scratch)
        data = Path(source).read_bytes()
        sb.run(f"open(SCRATCH + '/evil{ext}', 'wb').write(bytes.fromhex({data.hex()!r}))")
        code = ("import importlib.util\n"
                f"spec = importlib.util.spec_from_file_location({name!r}, SCRATCH + '/evil{ext}')\n"
                "mod = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(mod)")
        result = sb.run(code)
        assert result.error and ("outside the Python installation is refused" in result.stderr
                                 or "Permission denied" in result.stderr)  # the audit hook, or Landlock
        _still_works(sb)


def test_no_signals_to_other_processes(guarded: Sandbox) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        result = guarded.run(f"import os, signal\nos.kill({victim.pid}, signal.SIGKILL)")
        assert result.error
        result = guarded.run(f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)")  # the parent
        assert result.error
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
    _still_works(guarded)


def test_no_raising_resource_limits(guarded: Sandbox) -> None:
    result = guarded.run("import resource\nresource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))")
    assert result.error
    limit = guarded.run("import resource\nprint(resource.getrlimit(resource.RLIMIT_AS))")
    assert limit.stdout == f"({2048 << 20}, {2048 << 20})\n"
    _still_works(guarded)


@pytest.mark.parametrize("action", ["read_secret", "read_parent_environ", "read_config", "list_root"])
def test_no_reads_outside_the_workspace(guarded: Sandbox, action: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    code = {
        "read_secret": f"print(open({str(secret)!r}).read())",
        "read_parent_environ": f"print(open('/proc/{os.getpid()}/environ', 'rb').read())",
        "read_config": "print(open('/etc/passwd').read())",
        "list_root": "import os\nprint(os.listdir('/etc'))",
    }[action]
    result = guarded.run(code)
    assert result.error, result.stdout
    assert "TOP SECRET" not in result.stdout
    assert "PermissionError" in result.stderr
    _still_works(guarded)


_RACE = """
import threading
stop = False
def busy():
    while not stop:
        open('manifest.json').close()  # keeps the audit hook checking allowed opens
helpers = [threading.Thread(target=busy) for _ in range(3)]
for t in helpers:
    t.start()
leaked = 0
try:
    for _ in range(3000):
        try:
            open(SECRET).read()
            leaked += 1
        except PermissionError:
            pass
finally:
    stop = True
    for t in helpers:
        t.join()
print('leaked', leaked)
"""


def test_threads_cannot_slip_reads_past_the_audit_hook(workspace: Path, tmp_path: Path) -> None:
    """The hook's guard against re-entry is per thread: another thread's check in progress must
    not wave a read through (audit hook alone, as `--sandbox basic` has it)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    with _make(workspace, "audit-only") as sb:
        result = sb.run(_RACE.replace("SECRET", repr(str(secret))))
        assert result.stdout == "leaked 0\n", result.stdout + result.stderr
        _still_works(sb)


@pytest.fixture
def workspace_with_runs(workspace: Path) -> Iterator[Path]:
    runs = workspace / "runs"
    runs.mkdir(exist_ok=True)
    (runs / "20260101-000000-abcdef.jsonl").write_text('{"question": "EARLIER PRIVATE QUESTION"}\n')
    (workspace / ".last_used").touch()
    try:
        yield workspace
    finally:
        shutil.rmtree(runs)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_the_model_sees_documents_only(workspace_with_runs: Path, config: str) -> None:
    """Traces of earlier runs (their questions and answers), locks and bookkeeping are not even
    listed: a documents-only view at auto/strict, hidden from listings at basic."""
    with _make(workspace_with_runs, config) as sb:
        listed = sb.run("import os, glob, pathlib\nprint(sorted(os.listdir('.')))\nprint(glob.glob('*') + glob.glob('runs/*'))\n"
                        "print(sorted(p.name for p in pathlib.Path('.').iterdir()))\n"
                        "print(sorted(e.name for e in os.scandir('.')))\nprint(ls())")
        assert not listed.error, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0] == lines[2] == lines[3] == "['docs', 'index.sqlite', 'manifest.json']", listed.stdout
        assert "runs" not in listed.stdout and ".lock" not in listed.stdout and ".last_used" not in listed.stdout
        read = sb.run("print(open('runs/20260101-000000-abcdef.jsonl').read())")
        assert read.error and "PRIVATE" not in read.stdout
        docs = sb.run("print(open('docs/notes.md/pages/0001.txt').read()[:20], len(grep('Contoso')) > 0)")
        assert not docs.error and docs.stdout.endswith("True\n"), docs.stderr


def test_symlink_out_of_scratch_does_not_leak(guarded: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    guarded.run(f"import os\nos.symlink({str(secret)!r}, SCRATCH + '/link.txt')")  # the audit hook refuses this
    result = guarded.run("print(open(SCRATCH + '/link.txt').read())")
    assert result.error and "TOP SECRET" not in result.stdout
    _still_works(guarded)


@pytest.mark.parametrize("code", [
    "open(OUTSIDE, 'w').write('pwned')",
    "open('docs/contract.pdf/pages/0001.txt', 'a').write('pwned')",
    "open('new-file.txt', 'w').write('pwned')",
    "import os\nos.remove('manifest.json')",
    "import os\nos.rename('docs/notes.md', 'docs/moved')",
    "import os\nos.mkdir('docs/evil')",
    "import shutil\nshutil.rmtree('docs/notes.md')",
    "import os\nos.truncate('index.sqlite', 0)",
    "import os\nos.chmod('manifest.json', 0o777)",
    "import sqlite3\nsqlite3.connect('index.sqlite').execute('DELETE FROM chunks')",
    "import os\nfd = os.open(OUTSIDE, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'pwned')",
])
def test_no_writes_outside_scratch(guarded: Sandbox, workspace: Path, code: str, tmp_path: Path) -> None:
    before = tree_digest(workspace)
    outside = tmp_path / "pwned.txt"
    result = guarded.run(code.replace("OUTSIDE", repr(str(outside))))
    assert result.error, result.stdout
    assert not outside.exists()
    assert tree_digest(workspace) == before
    _still_works(guarded)


def test_stdlib_modules_that_link_system_libraries_still_import(guarded: Sandbox) -> None:
    result = guarded.run("import zlib, gzip, bz2, lzma, hashlib, decimal, csv, statistics, datetime, difflib\n"
                         "print(zlib.crc32(b'rlm'), hashlib.sha256(b'rlm').hexdigest()[:8])")
    assert result.stdout == "1384078434 81de85df\n", result.stderr


def test_scratch_is_writable(guarded: Sandbox) -> None:
    result = guarded.run("import os, tempfile\np = os.path.join(SCRATCH, 'notes.txt')\nopen(p, 'w').write('kept')\n"
                         "print(open(p).read(), tempfile.gettempdir() == SCRATCH)")
    assert result.stdout == "kept True\n", result.stderr


# ---- limits -----------------------------------------------------------------------------------

def test_wall_time_limit_kills_restarts_and_says_variables_were_lost(workspace: Path) -> None:
    with Sandbox(workspace, limits=SandboxLimits(cell_timeout=1)) as sb:
        sb.run("x = 1")
        result = sb.run("while True:\n    pass")
        assert result.timed_out and result.restarted and result.error
        assert "ran longer than 1 s" in result.stderr and "all variables were lost" in result.stderr
        after = sb.run("print(x)")
        assert "NameError" in after.stderr
        _still_works(sb)


def test_memory_bomb_raises_memory_error_in_the_cell(workspace: Path) -> None:
    with Sandbox(workspace, limits=SandboxLimits(memory_mb=512)) as sb:
        sb.run("keep = 'still here'")
        result = sb.run("hog = bytearray(1024 ** 3)")
        assert result.error and "MemoryError" in result.stderr and "512 MiB" in result.stderr
        assert not result.restarted
        assert sb.run("print(keep)").stdout == "still here\n"


def test_cpu_time_limit_kills_the_child(workspace: Path) -> None:
    with Sandbox(workspace, limits=SandboxLimits(cpu_seconds=1, cell_timeout=30)) as sb:
        result = sb.run("while True:\n    pass")
        assert result.restarted and "SIGXCPU" in result.stderr and not result.timed_out
        _still_works(sb)


def test_open_files_limit(workspace: Path) -> None:
    with Sandbox(workspace, limits=SandboxLimits(max_files=64)) as sb:
        result = sb.run("fs = [open('manifest.json') for _ in range(100)]")
        assert result.error and "Too many open files" in result.stderr
        sb.run("for f in fs if 'fs' in dir() else []: f.close()")
        _still_works(sb)


def test_file_size_limit_in_scratch(workspace: Path) -> None:
    with Sandbox(workspace, limits=SandboxLimits(file_mb=1)) as sb:
        result = sb.run("with open(SCRATCH + '/big.bin', 'wb') as f:\n    f.write(b'x' * (3 << 20))")
        assert result.error and "File too large" in result.stderr
        assert sb.run("import os\nprint(os.path.getsize(SCRATCH + '/big.bin') <= 1 << 20)").stdout == "True\n"
        _still_works(sb)


def test_output_flood_is_capped(workspace: Path) -> None:
    with Sandbox(workspace, limits=SandboxLimits(output_cap=10_000)) as sb:
        result = sb.run("for i in range(200_000):\n    print('flood', i)")
        assert result.stdout_total > 2_000_000 and len(result.stdout) == 10_000
        assert len(result.for_model(10_000)) < 10_200
        _still_works(sb)


def test_sandbox_death_is_reported_and_recovered(workspace: Path) -> None:
    with Sandbox(workspace) as sb:
        # a crash (in a PID namespace the kernel is its first process, which ignores the signals it
        # sends itself: abort() ends in a fault the kernel delivers regardless)
        result = sb.run("import os\nos.abort()")
        assert result.restarted and "the sandbox process died (killed by SIG" in result.stderr, result.stderr
        _still_works(sb)


def test_startup_is_quick_and_the_child_is_gone_after_close(workspace: Path) -> None:
    sb = Sandbox(workspace).start()
    pid = sb.proc.pid if sb.proc else -1
    sb.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not Path(sb.base).exists()
