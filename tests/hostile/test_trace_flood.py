"""A trace flood: one reply with twenty cells, each printing a million emoji (4 MB of UTF-8) to
stdout and stderr. Cells per reply, bytes per stream and bytes of trace per run are all capped,
and the trace says where a cap cut."""

from __future__ import annotations

import json
from pathlib import Path

from rlmcli.sandbox import Sandbox
from rlmcli.sandbox.process import SandboxLimits
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM
from tests.hostile.conftest import LOOK, cell

EMOJI = "import sys\nprint('\\U0001F600' * 1_000_000)\nprint('\\U0001F600' * 1_000_000, file=sys.stderr)"


def _ask(server: FakeLLM, replies: list[str], ws: Path, *extra: str) -> tuple[int, Path, str]:
    server.script("gpt-4o-mini", replies)
    result = run_rlm("ask", str(FIXTURES / "contract.pdf"), "q", "--model", "openai/gpt-4o-mini", "--api-base",
                     server.base, "--no-cache", "--json", "-w", str(ws), *extra)
    return result.returncode, Path(json.loads(result.stdout)["trace"]), result.stderr.decode()


def test_twenty_cells_of_emoji_in_one_reply(server: FakeLLM, tmp_path: Path) -> None:
    flood = "\n".join(cell(EMOJI) for _ in range(20))
    code, trace, err = _ask(server, [LOOK, flood, cell("FINAL('done [contract.pdf p.1]')")], tmp_path / "ws")
    assert code == 0, err
    size = trace.stat().st_size
    assert size < 20 << 20, f"{size >> 20} MB of trace for one reply"
    events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    cells = [e for e in events if e["kind"] == "cell_output" and e["iteration"] == 2]
    assert 0 < len(cells) < 20
    assert any(e["kind"] == "notice" and e["reason"] == "cells-cut" for e in events)
    for e in cells:
        assert len(e["output"].encode("utf-8")) < 2_100_000  # two streams of at most 1 MB each, in bytes
        assert "bytes" in e["output"]  # the cut is stated


def test_the_run_trace_has_a_byte_cap(server: FakeLLM, tmp_path: Path) -> None:
    flood = "\n".join(cell(EMOJI) for _ in range(8))
    code, trace, err = _ask(server, [LOOK] + [flood] * 3 + [cell("FINAL('done [contract.pdf p.1]')")], tmp_path / "ws",
                            "--max-iterations", "10")
    assert code == 0, err
    lines = trace.read_text(encoding="utf-8").splitlines()
    assert trace.stat().st_size < (32 << 20) + (4 << 20)
    events = [json.loads(line) for line in lines]
    assert any(e["kind"] == "notice" and e["reason"] == "trace-cut" for e in events)
    # the run's end is traced (its citations' marks may follow it)
    ends = [e for e in events[-2:] if e["kind"] == "run_finished"]
    assert ends and ends[0]["status"] == "answered"


def test_the_stream_cap_counts_bytes(workspace: Path) -> None:
    with Sandbox(workspace, limits=SandboxLimits(output_cap=10_000)) as sb:
        result = sb.run("print('\\U0001F600' * 100_000)")
        assert len(result.stdout.encode("utf-8")) <= 10_000
        assert result.stdout_total == 400_001  # bytes printed, including the newline
