"""`python bench/mcp_load.py`: `rlm mcp` under the load of issue 28, through the official client.

Over a workspace of fixtures/contract.pdf and fixtures/notes.md (in a temporary RLM_HOME): the
oversized arguments the red team used (a 60,000-bracket glob, a 20 MB document name, 300,000
distinct words), each timed with the server's peak memory, then 45 `repl` calls sleeping 20 s at
once and 10 `list_documents` timed while they run. Prints one line per figure.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent


def _peak_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))


def _server_pid(cwd: str) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if os.readlink(f"/proc/{entry}/cwd") == cwd and b"rlmcli\x00mcp" in fh.read():
                        return int(entry)
            except OSError:
                continue
    raise SystemExit("no server process found")


async def _timed(c: Client, tool: str, args: dict[str, Any]) -> tuple[float, bool]:
    started = time.perf_counter()
    result = await c.call_tool(tool, args)
    return time.perf_counter() - started, result.is_error


async def _load(params: StdioServerParameters, cwd: str) -> None:
    async with Client(params) as c:
        pid = _server_pid(cwd)
        print(f"server peak memory at start: {_peak_kb(pid) / 1024:.0f} MB")
        for what, tool, args in [("grep, doc = '[' x 60,000", "grep", {"pattern": "x", "doc": "[" * 60_000}),
                                 ("read_page, a 20 MB doc name", "read_page", {"doc": "x" * 20_000_000, "page": 1}),
                                 ("search, 300,000 distinct words", "search",
                                  {"query": " ".join(f"w{i}q" for i in range(300_000))})]:
            seconds, refused = await _timed(c, tool, args)
            print(f"{what}: {seconds * 1000:.0f} ms, {'refused' if refused else 'served'}, "
                  f"server peak {_peak_kb(pid) / 1024:.0f} MB")
        replies: list[Any] = []
        async with anyio.create_task_group() as tg:
            async def sleeper() -> None:
                replies.append(await c.call_tool("repl", {"code": "import time; time.sleep(20)"}))

            for _ in range(45):
                tg.start_soon(sleeper)
            await anyio.sleep(3)
            latencies = [(await _timed(c, "list_documents", {}))[0] for _ in range(10)]
            busy = sum(1 for r in replies if r.is_error)
            print(f"list_documents while 45 repl calls sleep: median {statistics.median(latencies) * 1000:.1f} ms, "
                  f"max {max(latencies) * 1000:.1f} ms; {busy} of the 45 told the server is busy")
            tg.cancel_scope.cancel()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RLM_HOME": os.path.join(tmp, "home")}
        files = [str(ROOT / "fixtures" / name) for name in ("contract.pdf", "notes.md")]
        subprocess.run([sys.executable, "-m", "rlmcli", "ingest", *files, "-w", "load"], env=env, check=True,
                       capture_output=True)
        cwd = os.path.realpath(tmp)
        params = StdioServerParameters(command=sys.executable, args=["-m", "rlmcli", "mcp", "-w", "load"],
                                       cwd=cwd, env=env)
        anyio.run(_load, params, cwd)


if __name__ == "__main__":
    main()
