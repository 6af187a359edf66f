"""Hostile model code and hostile files, against the real `rlm` and the HTTP fake."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM

MODEL = "gpt-4o-mini"
LOOK = "```python\nprint(len(grep('fee')))\n```"


def cell(code: str) -> str:
    return f"```python\n{code}\n```"


def ask(server: FakeLLM, replies: list[str], *extra: str, ws: Path | None = None,
        env: dict[str, str | None] | None = None) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """`rlm ask` over the contract with the root model playing `replies`; (result, seconds)."""
    server.script(MODEL, replies)
    where = ["-w", str(ws)] if ws is not None else [str(FIXTURES / "contract.pdf")]
    started = time.monotonic()
    result = run_rlm("ask", *where, "q", "--model", f"openai/{MODEL}", "--api-base", server.base, "--no-cache",
                     "-v", *extra, env={"RLM_RETRY_BASE": "0.01", **(env or {})})
    return result, time.monotonic() - started


def outputs(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode(errors="replace")


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A directory outside the workspace that nothing may change."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET")
    return outside


from tests.sandbox.conftest import workspace  # noqa: E402,F401 - the shared fixture workspace
