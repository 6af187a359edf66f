"""Budgets are limits, end to end over HTTP: a fake model priced through the `prices` setting, a
request that cannot fit is never sent, an unpriced --max-cost is refused before any request, an
unknown price prints as unknown, and a partial answer is words, never code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmcli.tokens import count_tokens
from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM, Reply

PRICED = "openai/fake-priced"
IN_PRICE, OUT_PRICE = 100.0, 1.0  # US dollars per million tokens: the prompt is what costs
GREP = "```python\nprint(grep('the'))\n```"  # a code-only reply whose output grows the next prompt


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    """The fake server counting tokens as tiktoken does, so its usage is close to rlm's estimate."""
    s = FakeLLM(count_tokens=count_tokens).start()
    yield s
    s.stop()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[prices]\n"{PRICED}" = {{input = {IN_PRICE}, output = {OUT_PRICE}}}\n')
    return cfg


def _ask(server: FakeLLM, config: Path, *extra: str, model: str = PRICED,
         files: tuple[str, ...] = (str(FIXTURES / "contract.pdf"),)) -> subprocess.CompletedProcess[bytes]:
    return run_rlm("ask", *files, "What is the fee?", "--model", model, "--api-base", server.base, "--no-cache",
                   *extra, env={"RLM_RETRY_BASE": "0.01", "RLM_CONFIG": str(config)})


def _spent(server: FakeLLM) -> float:
    """What the server billed, from the usage it reported, at the configured prices."""
    return sum(u["prompt_tokens"] * IN_PRICE / 1e6 + u["completion_tokens"] * OUT_PRICE / 1e6 for u in server.usage_sent)


def test_prices_from_config_price_a_fake_model(server: FakeLLM, config: Path) -> None:
    server.script("fake-priced", ["```python\nFINAL(str(len(grep('fee'))))\n```"])
    done = _ask(server, config, "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["usage"]["cost"] == pytest.approx(_spent(server), rel=1e-6) and record["usage"]["cost"] > 0


def test_a_request_that_cannot_fit_is_not_sent(server: FakeLLM, config: Path) -> None:
    """The issue's overshoot: the third prompt is known before sending and does not fit in what is
    left, so it is never sent and the run ends within --max-cost."""
    server.responder("fake-priced", lambda prompt: GREP)
    calibrate = _ask(server, config, "--max-iterations", "3", "--json")
    costs = [c["cost"] for c in json.loads(calibrate.stdout)["model_calls"]]
    assert len(costs) == 4 and costs[2] > costs[1] > costs[0] > 0  # 3 iterations and the last call
    budget = costs[0] + costs[1] + costs[2] / 2  # the old check (spent < budget) sent the third call
    server.requests.clear()
    server.usage_sent.clear()
    done = _ask(server, config, "--max-cost", f"{budget:.8f}", "--json")
    assert done.returncode == 3, done.stderr
    record = json.loads(done.stdout)
    assert (record["status"], record["limit"]) == ("partial", "max-cost")
    assert len(server.requests) == 2 and _spent(server) <= budget
    assert record["usage"]["cost"] <= budget
    assert all(r["params"]["max_tokens"] >= 256 for r in server.requests)  # the reply cap went with each request
    assert record["answer"] == "no answer: the max-cost budget was reached after 2 iterations"


def test_concurrent_sub_calls_book_their_worst_case_before_they_are_sent(server: FakeLLM, config: Path) -> None:
    """Twenty sub-calls at once: what is in flight counts against the budget, so they cannot all go."""
    server.script("fake-priced", ["```python\nprint(llm_batch(['word ' * 2000] * 20))\n```"])
    server.responder("fake-priced", lambda prompt: Reply("ok", delay=0.2) if prompt.startswith("word") else GREP)
    done = _ask(server, config, "--max-cost", "2.0", "--max-iterations", "2", "--concurrency", "20")
    sub_calls = [r for r in server.requests if r["messages"][-1]["content"].startswith("word")]
    assert 0 < len(sub_calls) < 20 and _spent(server) <= 2.0, done.stderr
    assert b"ERROR: budget reached: max-cost" not in done.stdout  # the model saw that, the user sees words


def test_max_cost_flag_with_an_unpriced_model_is_refused_before_any_request(server: FakeLLM, config: Path) -> None:
    done = _ask(server, config, "--max-cost", "0.000001", model="openai/unpriced")
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "--max-cost 1e-06 cannot be enforced: no price is known for openai/unpriced" in err
    assert '[prices] "openai/unpriced" = {input = 0.15, output = 0.60}' in err and "--max-tokens" in err
    assert server.requests == []


def test_max_cost_from_config_warns_once_and_runs(server: FakeLLM, tmp_path: Path) -> None:
    cfg = tmp_path / "global.toml"
    cfg.write_text("max_cost = 0.5\n")
    server.script("unpriced", ["```python\nFINAL(str(len(grep('fee'))))\n```"])
    done = _ask(server, cfg, model="openai/unpriced")
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert err.count("max_cost 0.5 (config file") == 1 and "cannot be enforced" in err
    assert "cost unknown" in err and "$0.0000" not in err


def test_max_tokens_always_limits_an_unpriced_model(server: FakeLLM, config: Path) -> None:
    server.responder("unpriced", lambda prompt: GREP)
    done = _ask(server, config, "--max-tokens", "6000", "--json", model="openai/unpriced")
    assert done.returncode == 3, done.stderr
    record = json.loads(done.stdout)
    assert record["limit"] == "max-tokens" and record["usage"]["cost"] is None
    used = sum(u["prompt_tokens"] + u["completion_tokens"] for u in server.usage_sent)
    assert 0 < used <= 6000


def test_unknown_cost_is_unknown_on_failed_and_cached_runs(server: FakeLLM, config: Path, tmp_path: Path) -> None:
    server.fault("unpriced", status=401)
    failed = _ask(server, config, "--json", model="openai/unpriced")
    assert failed.returncode == 4 and json.loads(failed.stdout)["usage"]["cost"] is None
    script = ["```python\nprint(grep('fee'))\n```", "```python\nFINAL('the fee')\n```"]
    env = {"RLM_RETRY_BASE": "0.01", "RLM_CONFIG": str(config)}
    for _ in range(2):  # the second run comes from the cache entirely
        server.script("unpriced", list(script))
        cached = run_rlm("ask", str(FIXTURES / "contract.pdf"), "fee?", "--model", "openai/unpriced", "--api-base",
                         server.base, env=env)
    assert cached.returncode == 0 and "(2 from the cache)" in cached.stderr.decode()
    assert "cost unknown" in cached.stderr.decode() and "$0.0000" not in cached.stderr.decode()


def test_dry_run_cost_is_null_when_the_price_is_unknown(server: FakeLLM, config: Path) -> None:
    unknown = json.loads(_ask(server, config, "--dry-run", "--json", model="openai/unpriced").stdout)
    assert unknown["worst_case_cost"] is None and unknown["models"][0]["worst_case_cost"] is None
    priced = json.loads(_ask(server, config, "--dry-run", "--json").stdout)
    assert priced["worst_case_cost"] > 0 and priced["price_known"] is True
    assert server.requests == []


# ---- partial answers: words, never code -----------------------------------------------------

@pytest.mark.parametrize(("flags", "limit", "last"), [
    (["--max-iterations", "2"], "max-iterations", GREP.replace("grep('the')", "search('operating income', k=10)")),
    (["--max-calls", "2"], "max-calls", None),
    (["--max-tokens", "5000"], "max-tokens", None),
])
def test_partial_answer_of_code_only_replies_is_a_no_answer_line(server: FakeLLM, config: Path, flags: list[str],
                                                                  limit: str, last: str | None) -> None:
    server.script("fake-priced", [GREP, GREP] + ([last] if last else []))
    done = _ask(server, config, *flags)
    assert done.returncode == 3, done.stderr
    out = done.stdout.decode()
    assert out.startswith(f"no answer: the {limit} budget was reached after ") and "```" not in out
    assert "print(" not in out and f"rlm: partial answer: the {limit} budget was reached" in done.stderr.decode()


def test_partial_answer_is_the_last_call_final_or_the_last_prose(server: FakeLLM, config: Path) -> None:
    server.script("fake-priced", [GREP, "```python\nFINAL(\"The fee is EUR 48,500 [contract.pdf p.4]\")\n```"])
    asked = _ask(server, config, "--max-iterations", "1", "--json")
    assert json.loads(asked.stdout)["answer"] == "The fee is EUR 48,500 [contract.pdf p.4]"
    server.script("fake-priced", ["The fee clause is on page 4.\n" + GREP, GREP])
    prose = _ask(server, config, "--max-calls", "2")
    assert prose.returncode == 3 and prose.stdout.decode() == "The fee clause is on page 4.\n"


def test_partial_answer_after_a_timeout_is_words(server: FakeLLM, config: Path) -> None:
    server.script("fake-priced", ["Reading clause 6 first.\n```python\nimport time\ntime.sleep(30)\n```"])
    done = _ask(server, config, "--timeout", "3", "--json")
    record = json.loads(done.stdout)
    assert done.returncode == 3 and (record["status"], record["limit"]) == ("partial", "timeout")
    assert record["answer"] == "Reading clause 6 first."


def test_partial_answer_after_ctrl_c_of_a_code_only_run_is_a_no_answer_line(server: FakeLLM, tmp_path: Path) -> None:
    server.script("fake-priced", ["```python\nx = llm_batch(['slow'] * 2)\n```"])
    server.responder("fake-priced", lambda p: Reply("late", delay=20))
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    proc = subprocess.Popen([sys.executable, "-m", "rlmcli", "ask", str(FIXTURES / "contract.pdf"), "q",
                             "--model", PRICED, "--api-base", server.base, "--no-cache"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, RLM_RETRY_BASE="0.01", RLM_CONFIG=str(cfg)))
    deadline = time.time() + 60
    while len(server.requests) < 3 and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out.decode() == "no answer: the run was interrupted after 1 iteration\n"


def test_prices_come_from_the_environment_too_and_are_checked(server: FakeLLM, tmp_path: Path) -> None:
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    env = {"RLM_CONFIG": str(cfg), "RLM_PRICES": json.dumps({PRICED: {"input": 0.15, "output": 0.6}})}
    estimate = run_rlm("ask", str(FIXTURES / "notes.md"), "q", "--model", PRICED, "--api-base", server.base,
                       "--dry-run", "--json", env=env)
    assert json.loads(estimate.stdout)["price_known"] is True
    env["RLM_PRICES"] = json.dumps({PRICED: {"input": -1, "output": 0.6}})
    bad = run_rlm("ask", str(FIXTURES / "notes.md"), "q", "--model", PRICED, "--api-base", server.base, env=env)
    assert bad.returncode == 2
    assert b"prices from the environment (RLM_PRICES) for openai/fake-priced: input must be a number" in bad.stderr
    served = run_rlm("mcp", "--model", "openai/unpriced", "--max-cost", "1", env={"RLM_CONFIG": str(cfg)})
    assert served.returncode == 2 and b"cannot be enforced" in served.stderr
    assert server.requests == []
