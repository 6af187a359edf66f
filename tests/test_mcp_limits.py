"""`rlm mcp` under a hostile or careless client, through the official MCP client over stdio: bounded
arguments, bounded pools with busy replies, capped and reaped sandboxes, sessions that recover,
and the smaller leaks (workspaces walked by ingest, paths and credentials echoed, URIs).

Nothing here waits on the wall clock for a verdict: slow work is started and then stopped, and
every wait is a bounded number of polls for an event (a process gone, a busy reply).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from rlmcli.serve.mcp_server import CODE_CHARS
from tests.conftest import FIXTURES, run_rlm
from tests.test_mcp import serve, tool_error

BLOCK = "import time\ntime.sleep(600)"  # a cell that runs until it is stopped


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A directory the server starts in (its allowed root) holding a workspace 'deal'."""
    root = tmp_path / "root"
    root.mkdir()
    for name in ("contract.pdf", "notes.md"):
        shutil.copy(FIXTURES / name, root / name)
    done = run_rlm("ingest", str(root / "contract.pdf"), str(root / "notes.md"), "-w", "deal")
    assert done.returncode == 0, done.stderr
    return Path(os.path.realpath(root))


def _params(root: Path, *args: str, workspace: str | None = "deal", shell: str = "",
            env: dict[str, str] | None = None) -> StdioServerParameters:
    """`rlm mcp` started in `root`; `shell` runs first in the same process (ulimit, stderr to a file)."""
    cmd = [sys.executable, "-m", "rlmcli", "mcp", *(["-w", workspace] if workspace else []), *args]
    environ = {**os.environ, **(env or {})}
    if shell:
        return StdioServerParameters(command="sh", args=["-c", f'{shell}\nexec "$@"', "sh", *cmd], cwd=str(root),
                                     env=environ)
    return StdioServerParameters(command=cmd[0], args=cmd[1:], cwd=str(root), env=environ)




def _read(path: str, mode: str = "r") -> Any:
    with open(path, mode) as fh:
        return fh.read()


def _server_pid(root: Path) -> int:
    """The `rlm mcp` process started in `root`."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(root) and b"rlmcli\x00mcp" in _read(f"/proc/{entry}/cmdline", "rb"):
                    return int(entry)
            except OSError:
                continue
    raise AssertionError(f"no rlm mcp process runs in {root}")


def _sandboxes(pid: int) -> list[int]:
    """The sandbox processes a server runs (its children running the kernel)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status, cmd = _read(f"/proc/{entry}/status"), _read(f"/proc/{entry}/cmdline", "rb")
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status and b"kernel.py" in cmd:
                found.append(int(entry))
    return found


def _gone(pid: int) -> bool:
    try:
        return "\nState:\tZ" in _read(f"/proc/{pid}/status")
    except OSError:
        return True


async def _until(check: Callable[[], Any], what: str, polls: int = 300) -> Any:
    """Poll `check` (at most `polls` times, a tenth of a second apart) until it is truthy."""
    for _ in range(polls):
        value = check()
        if value:
            return value
        await anyio.sleep(0.1)
    raise AssertionError(f"still waiting for {what} after {polls} polls")


async def _run_blocked(c: Client, polls: int = 300) -> None:
    """Start a cell that never ends (retrying while the server is busy); returns when cancelled."""
    for _ in range(polls):
        r = await c.call_tool("repl", {"code": BLOCK})
        assert r.is_error and "busy" in tool_error(r), r  # it only returns early when refused
        await anyio.sleep(0.1)


async def _repl_until_busy(c: Client, polls: int = 300) -> str:
    """Open sessions with a quick cell until the server says it is busy; its message."""
    for _ in range(polls):
        r = await c.call_tool("repl", {"code": "1"})
        if r.is_error and "busy" in tool_error(r):
            return tool_error(r)
        await anyio.sleep(0.1)
    raise AssertionError("the server never said it was busy")


# ---- 1. every argument bounded before work ---------------------------------------------------------

def test_oversized_arguments_are_refused_before_any_work(served: Path) -> None:
    # Each of these kept the server busy (in-process, for seconds to hours) or ran the sandbox before.
    many_words = " ".join(f"w{i}x{i % 7}" for i in range(300))  # 300 distinct words, 2,000 characters
    calls = [("grep", {"pattern": "fee", "doc": "[" * 5000}),
             ("search", {"query": "fees", "doc": "[" * 5000}),
             ("search", {"query": many_words}),
             ("search", {"query": "fee " * 5000}),
             ("read_page", {"doc": "x" * 200_000, "page": 1}),
             ("repl", {"code": "#" * (CODE_CHARS + 1)}),
             ("ingest", {"paths": ["a" * 10_000]}),
             ("ask", {"question": "why? " * 30_000}),
             ("grep", {"pattern": "a" * 5000})]

    async def body(c: Client) -> Any:
        pid = _server_pid(served)
        out = [await c.call_tool(name, args) for name, args in calls]
        return out, _sandboxes(pid), await c.call_tool("list_documents", {})

    results, sandboxes, alive = serve(_params(served), body)
    for (name, _args), result in zip(calls, results, strict=True):
        message = tool_error(result)
        assert "at most" in message, (name, message)
        assert len(message) < 600, (name, len(message))  # the input is not echoed back
    assert "300 distinct words" in tool_error(results[2])
    assert sandboxes == []  # refused before a sandbox started (the oversized grep and repl)
    assert not alive.is_error and alive.structured_content["documents"]


def test_the_cli_has_the_same_bounds(served: Path) -> None:
    glob = run_rlm("search", "fees", "-w", "deal", "--doc", "[" * 5000)
    assert glob.returncode != 0 and b"names and globs are at most 1,000" in glob.stderr
    words = run_rlm("search", " ".join(f"w{i}x" for i in range(300)), "-w", "deal")
    assert words.returncode == 2 and b"search takes at most 64" in words.stderr
    name = run_rlm("show", "y" * 5000, "-w", "deal")
    assert name.returncode != 0 and len(name.stderr) < 400 and b"Traceback" not in name.stderr


def test_closing_stdin_stops_the_work_in_flight(served: Path) -> None:
    """A client that leaves while cells run: the server stops them and exits, leaving no process."""
    seen: dict[str, Any] = {}

    async def body(c: Client) -> Any:
        seen["pid"] = _server_pid(served)

        async def blocked() -> None:
            await _run_blocked(c)

        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(blocked)
            seen["sandboxes"] = await _until(lambda: len(_sandboxes(seen["pid"])) == 2 and _sandboxes(seen["pid"]),
                                             "two cells running")
            tg.cancel_scope.cancel()  # leave with both calls in flight: the client closes stdin
        return True

    serve(_params(served), body)
    # The SDK's client kills a server still running 2 s after it closed stdin (and the sandboxes die
    # with it, by their parent-death signal). A server that stopped its work and exited by itself
    # also removed its sandboxes' directories; a killed one leaves them.
    assert _gone(seen["pid"]) and all(_gone(p) for p in seen["sandboxes"])
    assert not list(Path(tempfile.gettempdir()).glob(f"rlm-sandbox-{seen['pid']}-*"))


# ---- 2. one bounded pool per kind of work ----------------------------------------------------------

def test_busy_replies_and_quick_tools_answer_while_cells_run(served: Path) -> None:
    async def body(c: Client) -> Any:
        pid = _server_pid(served)
        out: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            scopes = []
            for _ in range(2):
                scope = anyio.CancelScope()
                scopes.append(scope)

                async def blocked(scope: anyio.CancelScope = scope) -> None:
                    with scope:
                        await _run_blocked(c)

                tg.start_soon(blocked)
            out["busy"] = await _repl_until_busy(c)
            running = _sandboxes(pid)
            # Both sessions run a cell that never ends; reads, searches and greps are not held up,
            # and twenty page reads at once all answer (they wait for a slot, they are not refused).
            out["docs"] = await c.call_tool("list_documents", {})
            out["search"] = await c.call_tool("search", {"query": "termination"})
            out["grep"] = await c.call_tool("grep", {"pattern": "fee"})
            pages: list[Any] = []

            async def read(n: int) -> None:
                pages.append(await c.call_tool("read_page", {"doc": "contract.pdf", "page": 1 + n % 8}))

            async with anyio.create_task_group() as readers:
                for n in range(20):
                    readers.start_soon(read, n)
            out["pages"] = pages
            # A cancelled call frees its slot: its cell is killed, and a new session can start.
            scopes[0].cancel()
            await _until(lambda: not set(running) <= set(_sandboxes(pid)), "the cancelled cell's process to end")
            out["after"] = await _until_ok(c)
            scopes[1].cancel()
        return out

    out = serve(_params(served, "--max-sessions", "2"), body)
    assert "all 2 repl sessions are running cells" in out["busy"]
    for key in ("docs", "search", "grep"):
        assert not out[key].is_error, (key, out[key])
    assert len(out["pages"]) == 20 and not any(p.is_error for p in out["pages"])
    assert out["after"].structured_content["output"].strip() == "2"


async def _until_ok(c: Client, polls: int = 300) -> Any:
    for _ in range(polls):
        r = await c.call_tool("repl", {"code": "1 + 1"})
        if not r.is_error:
            return r
        assert "busy" in tool_error(r)
        await anyio.sleep(0.1)
    raise AssertionError("no repl slot came free")


# ---- 3. capped sandbox pools, idle reaping, the session cap, a cell's threads ---------------------

def test_grep_sandboxes_are_capped_and_closed_when_idle(served: Path, tmp_path: Path) -> None:
    spaces = []
    for i in range(4):
        ws = served / f"ws{i}"
        assert run_rlm("ingest", str(served / "notes.md"), "-w", str(ws)).returncode == 0
        spaces.append(str(ws))

    async def body(c: Client) -> Any:
        pid = _server_pid(served)
        counts = []
        for ws in spaces * 2:
            r = await c.call_tool("grep", {"pattern": "retention", "workspace": ws})
            assert not r.is_error, r
            counts.append(len(_sandboxes(pid)))
        session = (await c.call_tool("repl", {"code": "x = 1"})).structured_content["session"]
        # Nothing else is asked: the timer alone closes the idle sandboxes and the idle session.
        await _until(lambda: not _sandboxes(pid), "idle sandboxes to be closed")
        return counts, await c.call_tool("repl", {"code": "print(x)", "session": session})

    counts, later = serve(_params(served, "--idle", "1"), body)
    assert max(counts) <= 2 and counts[-1] >= 1  # two warm grep sandboxes at most, over four workspaces
    assert "no repl session" in tool_error(later)


def test_the_session_cap_holds_under_concurrent_starts(served: Path) -> None:
    async def body(c: Client) -> Any:
        pid = _server_pid(served)
        replies: list[Any] = []

        async def start() -> None:
            replies.append(await c.call_tool("repl", {"code": BLOCK}))

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(start)
            await _until(lambda: len(replies) == 9, "nine busy replies")
            running = await _until(lambda: len(_sandboxes(pid)) == 3 and _sandboxes(pid), "three cells running")
            await anyio.sleep(0)
            tg.cancel_scope.cancel()
        return replies, running

    replies, running = serve(_params(served, "--max-sessions", "3"), body)
    assert all("all 3 repl sessions are running cells" in tool_error(r) for r in replies)
    assert len(running) == 3


def test_a_cells_threads_do_not_outlive_it(served: Path) -> None:
    async def body(c: Client) -> Any:
        joined = await c.call_tool("repl", {"code": "import threading\nx = 1\nt = threading.Thread(target=sum, args=([1],))\n"
                                                    "t.start(); t.join(); print('joined')"})
        sid = joined.structured_content["session"]
        kept = await c.call_tool("repl", {"code": "print(x)", "session": sid})
        stray = await c.call_tool("repl", {"code": "import threading, time\n"
                                                   "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()",
                                           "session": sid})
        after = await c.call_tool("repl", {"code": "print('x' in dir())", "session": sid})
        return joined, kept, stray, after

    joined, kept, stray, after = serve(_params(served), body)
    assert joined.structured_content["output"].strip() == "joined" and not joined.structured_content["restarted"]
    assert kept.structured_content["output"].strip() == "1"
    record = stray.structured_content
    assert record["restarted"] and record["error"] and "left 1 thread running" in record["output"]
    assert after.structured_content["output"].strip() == "False"  # a fresh child, the same session


# ---- 4. a session recovers after its channel breaks ------------------------------------------------

CLOSE_CHANNEL = """
import fcntl, os, stat
for fd in range(3, 256):
    try:
        reads = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        if reads and stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)  # the kernel's end of the channel from the parent
    except OSError:
        pass
print('closed')
"""


def test_a_session_recovers_after_its_channel_breaks(served: Path) -> None:
    async def body(c: Client) -> Any:
        first = await c.call_tool("repl", {"code": "x = 41"})
        sid = first.structured_content["session"]
        broke = await c.call_tool("repl", {"code": CLOSE_CHANNEL, "session": sid})
        out = [broke]
        for code in ("print('hello')", "x = 1", "print(x)", "print(len(grep('Termination')) > 0)"):
            out.append(await c.call_tool("repl", {"code": code, "session": sid}))
        return sid, out

    sid, (broke, met, _, kept, works) = serve(_params(served), body)
    for r in (broke, met, kept, works):
        assert not r.is_error and "internal error" not in str(r.content), r
        assert r.structured_content["session"] == sid
    assert broke.structured_content["output"].strip() == "closed"
    # The call that met the dead child is told the variables were lost; the session works on.
    assert met.structured_content["restarted"] and "variables were lost" in met.structured_content["output"]
    assert kept.structured_content["output"].strip() == "1"
    assert works.structured_content["output"].strip() == "True"


# ---- 5. the smaller leaks ----------------------------------------------------------------------------

def test_ingest_never_walks_a_workspace(served: Path) -> None:
    ws = served / "ws"

    async def body(c: Client) -> Any:
        return [await c.call_tool("ingest", {"paths": ["."], "workspace": str(ws)}) for _ in range(3)]

    reports = serve(_params(served), body)
    first, *again = (r.structured_content for r in reports)
    assert len(first["added"]) == 2 and first["pages"] > 0
    assert all(not r["added"] and not r["replaced"] for r in again)
    assert {"name": "root/ws", "why": "skipped: an rlm workspace (ingest the original files instead)"} in again[0]["skipped"]
    assert run_rlm("ingest", str(ws), "-w", "other").returncode != 0  # named alone, it is refused too


def test_workspaces_outside_the_roots_are_not_listed(served: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "private-ws"
    assert run_rlm("ingest", str(served / "notes.md"), "-w", str(outside)).returncode == 0
    assert run_rlm("ingest", str(served / "notes.md"), "-w", str(served / "inside-ws")).returncode == 0

    async def body(c: Client) -> Any:
        return await c.call_tool("list_documents", {})

    message = tool_error(serve(_params(served, workspace=None), body))
    assert "deal" in message and str(served / "inside-ws") in message
    assert "private-ws" not in message


def test_credentials_in_the_api_base_are_never_echoed(served: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: every request fails
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://alice:s3cr3tpw@127.0.0.1:{port}/v1?api_key=hunter2"
    flags = ["--model", "openai/root", "--api-base", base]
    once = {"RLM_RETRIES": "0"}

    async def body(c: Client) -> Any:
        return await c.call_tool("ask", {"question": "What are the fees?"})

    result = serve(_params(served, *flags, "--no-cache", env=once), body)
    text = str(result.content) + str(result.structured_content)
    cli = run_rlm("ask", "What are the fees?", "-w", "deal", "--no-cache", *flags, env=once)
    models = run_rlm("models", "--json", "--check", *flags, env=once)
    for shown in (text, cli.stderr.decode() + cli.stdout.decode(), models.stdout.decode() + models.stderr.decode()):
        assert "s3cr3tpw" not in shown and "hunter2" not in shown
    assert f"http://***@127.0.0.1:{port}/v1?api_key=***" in text
    assert f"http://***@127.0.0.1:{port}/v1?api_key=***" in cli.stderr.decode()


def test_page_uris_of_a_path_workspace_round_trip(served: Path) -> None:
    ws = served / "odd 100% [ws]"
    assert run_rlm("ingest", str(served / "contract.pdf"), "-w", str(ws)).returncode == 0

    async def body(c: Client) -> Any:
        page = await c.call_tool("read_page", {"doc": "contract.pdf", "page": 2, "workspace": str(ws)})
        return page, await c.read_resource(page.structured_content["uri"])

    page, resource = serve(_params(served), body)
    assert "%25" in page.structured_content["uri"]  # the '%' of the path is encoded once
    assert resource.contents[0].text == f"[contract.pdf p.2]\n{page.structured_content['text']}"


def _without_user_namespaces() -> str:
    """A shell line that leaves this process unable to make user namespaces (so the sandbox's netns
    and mountns layers fail), or '' where that cannot be arranged."""
    line = "echo 0 > /proc/sys/user/max_user_namespaces"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", f"{line} && ! unshare --user true"],
                           capture_output=True)
    return line if probe.returncode == 0 else ""


def test_auto_says_once_which_layers_are_missing(served: Path, tmp_path: Path) -> None:
    line = _without_user_namespaces()
    if not line:
        pytest.skip("this system does not let a test take user namespaces away (unshare --user), so no "
                    "sandbox layer can be made to fail here")
    log = tmp_path / "server.err"
    params = _params(served, shell=f"{line}\nexec 2>>{log}")
    params = StdioServerParameters(command="unshare", args=["--user", "--map-root-user", params.command, *params.args],
                                   cwd=params.cwd, env=params.env)

    async def body(c: Client) -> Any:
        return [await c.call_tool("repl", {"code": "print(1)"}),
                await c.call_tool("grep", {"pattern": "fee"}),
                await c.call_tool("repl", {"code": "print(2)"})]

    results = serve(params, body)
    assert not any(r.is_error for r in results)
    notes = [n for n in log.read_text().splitlines() if n.startswith("rlm: sandbox:")]
    assert len(notes) == 1, notes
    assert "does not allow netns, mountns" in notes[0] and "landlock" in notes[0]


def test_a_low_open_files_limit_does_not_break_the_sandbox(served: Path) -> None:
    async def body(c: Client) -> Any:
        return await c.call_tool("grep", {"pattern": "fee"})

    soft = serve(_params(served, shell="ulimit -Sn 128"), body)
    assert not soft.is_error and soft.structured_content["hits"]
    both = serve(_params(served, shell="ulimit -n 128"), body)  # hard limit too: say what is needed
    assert "the open-files limit is 128" in tool_error(both) and "ulimit -n 4096" in tool_error(both)


# ---- the search the server runs in-process -------------------------------------------------------

def test_a_search_stops_when_told_and_leaves_no_thread(served: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's search runs in its own process: it ends when its `stop` check says so (a
    cancelled call, the deadline), and the tiered path's parallel queries leave no thread behind
    (in the sandbox every thread left after a cell restarts it)."""
    import threading

    from rlmcli.workspace import query
    from rlmcli.workspace.ingest import workspace_path
    from rlmcli.workspace.store import Workspace

    ws = Workspace.open(workspace_path("deal"))
    with pytest.raises(query.SearchStopped):
        query.Searcher(ws.reader, stop=lambda: True).search("termination for convenience")
    monkeypatch.setattr(query, "TIERED_ABOVE", 0)  # the path that queries on two connections at once
    before = threading.active_count()
    searcher = query.Searcher(ws.reader)
    assert searcher.search("termination for convenience notice", k=3)[0].doc == "contract.pdf"
    assert threading.active_count() == before
    searcher.close()
