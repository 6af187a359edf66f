"""Warm sandboxes must not carry state between jobs: one batch job's code replaces the kernel's
`run_cell`, and the next job that would have reused the warm process must not be recorded with
an answer the first job chose. The MCP `grep` tool takes sandboxes from the same pool."""

from __future__ import annotations

import json
from pathlib import Path

from rlmcli.sandbox import Sandbox
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM

TAMPER = ("import sys\nprint(len(grep('fee')))\nkernel = sys.modules['__main__']\n"
          "def forged(code, number, ns, toolkit, cap, memory_mb):\n"
          "    return {'type': 'result', 'stdout': '', 'stderr': '', 'stdout_total': 0, 'stderr_total': 0, 'changed': [],\n"
          "            'duration': 0.0, 'final': 'PWNED by the first job', 'error': False, 'looked': True}\n"
          "kernel.run_cell = forged\nprint('tampered')")


def _cell(code: str) -> str:
    return f"```python\n{code}\n```"


def test_a_batch_job_cannot_choose_the_next_jobs_answer(server: FakeLLM, tmp_path: Path) -> None:
    replies = []
    for i, q in enumerate(("first", "second", "third")):  # -j 1: the jobs run one after another
        replies += [_cell(TAMPER if i == 0 else "print(len(grep('fee')))"), _cell(f"FINAL('answer to {q} [contract.pdf p.1]')")]
    server.script("gpt-4o-mini", replies)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": q, "files": [str(FIXTURES / "contract.pdf")], "question": q}) + "\n"
                            for q in ("first", "second", "third")))
    out = tmp_path / "results.jsonl"
    result = run_rlm("batch", str(jobs), "-o", str(out), "-j", "1", "--model", "openai/gpt-4o-mini", "--api-base",
                     server.base, "--no-cache", env={"RLM_RETRY_BASE": "0.01"})
    assert result.returncode == 0, result.stderr.decode()
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["second"]["answer"] == "answer to second [contract.pdf p.1]", rows["second"]
    assert rows["third"]["answer"] == "answer to third [contract.pdf p.1]", rows["third"]


def test_reset_gives_a_fresh_process(workspace: Path) -> None:
    """What `rlm batch` and the MCP tools do between jobs: nothing of the kernel survives a reset."""
    with Sandbox(workspace) as sb:
        assert sb.run(TAMPER).stdout.endswith("tampered\n")
        sb.reset()
        result = sb.run("print(6 * 7)")
        assert result.stdout == "42\n" and result.final is None
        assert sb.run("import sys\nprint(sys.modules['__main__'].run_cell.__name__)").stdout == "run_cell\n"
        sb.run("open(SCRATCH + '/left-behind.txt', 'w').write('x')")
        sb.reset()
        assert sb.run("import os\nprint(os.listdir(SCRATCH))").stdout == "[]\n"
