"""Shared fixtures: an isolated RLM_HOME for every test, paths to fixtures and the corpus."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from rlmcli.config import Settings
    from rlmcli.engine.loop import RunResult

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
CORPUS = ROOT.parent / "shared" / "corpus"
sys.path.insert(0, str(FIXTURES))


@pytest.fixture(autouse=True)
def rlm_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own RLM_HOME, so no test sees the user's workspaces."""
    home = tmp_path_factory.mktemp("rlm_home")
    monkeypatch.setenv("RLM_HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    return home


@pytest.fixture
def deal(tmp_path: Path) -> Path:
    """A workspace of the contract fixture, made with `rlm ingest` as a user would."""
    ws = tmp_path / "deal"
    done = run_rlm("ingest", str(FIXTURES / "contract.pdf"), "-w", str(ws))
    assert done.returncode == 0, done.stderr
    return ws


@pytest.fixture
def server() -> Iterator[object]:
    """A fake OpenAI-compatible server on 127.0.0.1 (tests/fakeserver.py), stopped after the test."""
    from tests.fakeserver import FakeLLM

    s = FakeLLM().start()
    yield s
    s.stop()


def corpus_file(name: str) -> Path:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} is missing: tests on the real R manuals need ../shared/corpus beside this checkout "
                    "(CI has it; the small fixtures under fixtures/ are always tested)")
    return path


def run_rlm(*args: str, input: bytes | None = None, env: dict[str, str | None] | None = None,
            prefix: list[str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """`rlm ARGS` in a real subprocess (`python -m rlmcli`), as a user would run it. An `env`
    value of None removes that variable."""
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run([*(prefix or []), sys.executable, "-m", "rlmcli", *args], input=input,
                          capture_output=True, env=full_env, timeout=300, cwd=cwd)


def make_settings(**values: object) -> Settings:
    """Settings for a test run: root model openai/root, sub-model openai/sub, no cache, fast retries."""
    from rlmcli.config import Settings

    base: dict[str, object] = dict(model="openai/root", sub_model="openai/sub", cache=False, retry_base=0.01)
    base.update(values)
    return Settings(**base)  # type: ignore[arg-type]


def ask_question(ws: object, question: str, provider: object = None, observer: object = None, *,
                 stream: bool = False, **values: object) -> RunResult:
    """run_question with test settings: a ScriptedProvider in-process, or the HTTP fake via api_base."""
    from rlmcli.ask import run_question

    return run_question(make_settings(**values), ws, question, observer, provider=provider, stream=stream)  # type: ignore[arg-type]
