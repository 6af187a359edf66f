"""The batch's --max-cost is a limit over HTTP: concurrent jobs cannot overshoot it together, a rerun
finishes the jobs it skipped, and an unpriced model cannot be given one."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmcli.tokens import count_tokens
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM, Reply

PRICED = "openai/fake-priced"
IN_PRICE, OUT_PRICE = 100.0, 1.0  # US dollars per million tokens


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    s = FakeLLM(count_tokens=count_tokens).start()
    yield s
    s.stop()


def _question(prompt: str) -> str:
    return prompt.split("Question: ", 1)[1].split("\n", 1)[0] if "Question: " in prompt else ""


def _answering(delay: float = 0.0) -> object:
    def respond(prompt: str) -> Reply:
        q = _question(prompt)
        return Reply(f"```python\nn = len(grep('fee'))\nFINAL('answer to: ' + {q!r})\n```", delay=delay)
    return respond


def _jobs(tmp_path: Path, n: int, name: str = "jobs.jsonl", **extra: str) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": f"job{i}", "files": [str(FIXTURES / "contract.pdf")],
                                        "question": f"question {i}", **extra}) + "\n" for i in range(1, n + 1)))
    return path


def _batch(server: FakeLLM, tmp_path: Path, *args: str, model: str = PRICED) -> subprocess.CompletedProcess[bytes]:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[prices]\n"{PRICED}" = {{input = {IN_PRICE}, output = {OUT_PRICE}}}\n')
    return run_rlm("batch", *args, "--model", model, "--api-base", server.base, "--no-cache",
                   env={"RLM_RETRY_BASE": "0.01", "RLM_CONFIG": str(cfg)})


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _spent(server: FakeLLM) -> float:
    return sum(u["prompt_tokens"] * IN_PRICE / 1e6 + u["completion_tokens"] * OUT_PRICE / 1e6 for u in server.usage_sent)


def _job_cost(server: FakeLLM, tmp_path: Path) -> float:
    one = _batch(server, tmp_path, str(_jobs(tmp_path, 1, "one.jsonl")), "-o", str(tmp_path / "one.out"))
    assert one.returncode == 0, one.stderr
    cost = float(_rows(tmp_path / "one.out")[0]["usage"]["cost"])
    server.requests.clear()
    server.usage_sent.clear()
    return cost


def test_a_rerun_with_a_higher_budget_runs_the_jobs_the_budget_skipped(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("fake-priced", _answering())
    cost = _job_cost(server, tmp_path)
    jobs, out = _jobs(tmp_path, 5), tmp_path / "results.jsonl"
    first = _batch(server, tmp_path, str(jobs), "-o", str(out), "-j", "1", "--max-cost", f"{2.5 * cost:.8f}")
    assert first.returncode == 3, first.stderr
    assert [r["status"] for r in _rows(out)] == ["answered", "answered", "skipped", "skipped", "skipped"]
    assert _spent(server) <= 2.5 * cost
    assert "2 done, 0 failed, 3 skipped for budget" in first.stderr.decode()
    asked_before = len(server.requests)
    again = _batch(server, tmp_path, str(jobs), "-o", str(out), "-j", "1", "--max-cost", f"{10 * cost:.8f}")
    assert again.returncode == 0, again.stderr
    asked = Counter(_question(r["messages"][1]["content"]) for r in server.requests[asked_before:])
    assert asked == {"question 3": 1, "question 4": 1, "question 5": 1}  # the skipped ones, and only they
    latest = {r["id"]: r["status"] for r in _rows(out)}
    assert set(latest.values()) == {"answered"} and len(latest) == 5
    assert "3 done, 0 failed, 0 skipped for budget, 2 already in" in again.stderr.decode()


def test_concurrent_jobs_cannot_overshoot_the_batch_budget_together(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("fake-priced", _answering())
    cost = _job_cost(server, tmp_path)
    server.responder("fake-priced", _answering(delay=0.3))  # eight jobs in flight at once
    out = tmp_path / "results.jsonl"
    done = _batch(server, tmp_path, str(_jobs(tmp_path, 8)), "-o", str(out), "-j", "8",
                  "--max-cost", f"{2.5 * cost:.8f}")
    assert done.returncode == 3, done.stderr
    rows = _rows(out)
    assert 1 <= sum(r["status"] == "answered" for r in rows) <= 2
    assert _spent(server) <= 2.5 * cost and sum((r.get("usage") or {}).get("cost") or 0 for r in rows) <= 2.5 * cost


def test_batch_max_cost_with_an_unpriced_model_is_refused_before_any_request(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("*", _answering())
    out = tmp_path / "results.jsonl"
    flag = _batch(server, tmp_path, str(_jobs(tmp_path, 2)), "-o", str(out), "--max-cost", "1", model="openai/unpriced")
    assert flag.returncode == 2 and b"--max-cost 1 cannot be enforced: no price is known for openai/unpriced" in flag.stderr
    job_model = _batch(server, tmp_path, str(_jobs(tmp_path, 2, model="openai/other")), "-o", str(out),
                       "--max-cost", "1")
    assert job_model.returncode == 2 and b"openai/other (named by job lines)" in job_model.stderr
    per_job = _batch(server, tmp_path, str(_jobs(tmp_path, 2)), "-o", str(out), "--job-max-cost", "1",
                     model="openai/unpriced")
    assert per_job.returncode == 2 and b"--job-max-cost 1 cannot be enforced" in per_job.stderr
    assert server.requests == [] and not out.exists()  # refused before the results file is opened


def test_batch_summary_says_unknown_for_an_unpriced_model(server: FakeLLM, tmp_path: Path) -> None:
    server.responder("unpriced", _answering())
    done = _batch(server, tmp_path, str(_jobs(tmp_path, 2)), "-o", str(tmp_path / "r.jsonl"), model="openai/unpriced")
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert "2 done," in err and "cost unknown" in err and "$0.0000" not in err
