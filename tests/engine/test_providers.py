"""Real providers' faults, over real HTTP against the fake server, through both transports: the
fast path (httpx) and litellm. Each fault ends within its bound with a message that
names what to fix."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from rlmcli.engine import events as ev
from rlmcli.engine.events import Recorder
from rlmcli.workspace.ingest import ingest
from rlmcli.workspace.store import Workspace
from tests.conftest import FIXTURES, ask_question, run_rlm
from tests.fakeserver import FakeLLM, Reply

TRANSPORTS = ["openai", "litellm"]
LOOK = "```python\nprint(len(grep('fee')))\n```"
DONE = "```python\nFINAL('done [contract.pdf p.4]')\n```"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace, _ = ingest([str(FIXTURES / "contract.pdf")], tmp_path_factory.mktemp("providers") / "ws")
    return workspace


def run(server: FakeLLM, ws: Workspace, transport: str, rec: Recorder | None = None, **values: object):
    values.setdefault("model", "openai/gpt-4o-mini")
    return ask_question(ws, "q", None, rec, api_base=server.base, transport=transport, **values)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_usage_and_cost_are_the_same_on_both_paths(server: FakeLLM, ws: Workspace, transport: str) -> None:
    server.script("gpt-4o-mini", [LOOK, DONE])
    result = run(server, ws, transport)
    assert result.status == "answered" and result.answer == "done [contract.pdf p.4]"
    sent = server.usage_sent
    assert [(c["prompt_tokens"], c["completion_tokens"]) for c in result.calls] == [
        (u["prompt_tokens"], u["completion_tokens"]) for u in sent]
    assert result.usage["cost"] == pytest.approx(result.usage["prompt_tokens"] * 1.5e-7
                                                 + result.usage["completion_tokens"] * 6e-7, abs=1e-6)  # rounded to 6 places


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_429_honours_retry_after_and_shows_the_retry(server: FakeLLM, ws: Workspace, transport: str) -> None:
    server.script("gpt-4o-mini", [Reply(status=429, headers={"Retry-After": "1"}), LOOK, DONE])
    rec = Recorder()
    result = run(server, ws, transport, rec, retry_base=5.0)  # the header, not the backoff, sets the wait
    refused, retried = server.requests[0]["time"], server.requests[1]["time"]
    assert result.status == "answered" and retried - refused >= 1.0  # it waited; how long, the event says
    retry = rec.of(ev.ModelRetry)
    assert [(r.attempt, r.attempts, r.delay, r.reason) for r in retry] == [(1, 4, 1.0, "429")]
    assert result.calls[0]["retries"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_500_then_success_is_retried(server: FakeLLM, ws: Workspace, transport: str) -> None:
    server.script("gpt-4o-mini", [Reply(status=500), Reply(status=503), LOOK, DONE])
    rec = Recorder()
    result = run(server, ws, transport, rec)
    assert result.status == "answered" and len(server.calls("gpt-4o-mini")) == 4
    assert [r.reason for r in rec.of(ev.ModelRetry)] == ["500", "503"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("status", "message", "kind", "hint"), [
    (401, "Incorrect API key provided", "auth", "check the API key"),
    (404, "The model `gpt-4o-mini` does not exist", "not_found", "check the model name"),
    (400, "This model's maximum context length is 128000 tokens. However, you requested 200000 tokens",
     "context_length", "context window"),
])
def test_non_retryable_errors_fail_at_once_naming_what_to_fix(server: FakeLLM, ws: Workspace, transport: str,
                                                               status: int, message: str, kind: str, hint: str) -> None:
    import json

    server.responder("gpt-4o-mini", lambda p: Reply(status=status, raw=json.dumps({"error": {"message": message}}).encode()))
    result = run(server, ws, transport)
    # One request: no retry (and so no retry's wait) for an error that retrying cannot fix.
    assert result.status == "failed" and result.error_kind == kind and len(server.calls("gpt-4o-mini")) == 1
    assert result.error.startswith(f"openai/gpt-4o-mini at {server.base}: HTTP {status}: ")
    assert message[:30] in result.error and hint in result.error


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_refused_gives_up_after_two_seconds_of_retries(ws: Workspace, transport: str) -> None:
    from rlmcli.engine.gateway import CONNECTION_GIVE_UP

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    rec = Recorder()
    result = ask_question(ws, "q", None, rec, model="openai/gpt-4o-mini", api_base=f"http://127.0.0.1:{port}/v1",
                          transport=transport)
    assert result.status == "failed" and result.error_kind == "connection"
    assert f"127.0.0.1:{port}" in result.error and "is the server running?" in result.error
    delays = [r.delay for r in rec.of(ev.ModelRetry)]
    # Doubling waits from 0.2 s, until the next would pass the two-second window (1.6 s after 0.2, 0.4, 0.8).
    assert 2 <= len(delays) <= 3 and delays == [0.2, 0.4, 0.8][:len(delays)] and sum(delays) <= CONNECTION_GIVE_UP


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_reset_500_reset_is_answered_each_failure_with_its_own_backoff(server: FakeLLM, ws: Workspace, transport: str,
                                                                       stream: bool) -> None:
    server.script("gpt-4o-mini", [Reply(reset=True), Reply(status=500), Reply(reset=True), LOOK, DONE])
    rec = Recorder()
    result = run(server, ws, transport, rec, retry_base=0.1, stream=stream)
    assert result.status == "answered" and len(server.calls("gpt-4o-mini")) == 5
    retries = rec.of(ev.ModelRetry)
    # A reset is named as one, and waits the ordinary backoff (0.1, 0.2, 0.4 s, +-20 %), not the
    # two-second window for a server that refuses connections.
    assert [(r.attempt, r.reason) for r in retries] == [(1, "connection reset"), (2, "500"), (3, "connection reset")]
    assert all(0.079 * 2 ** i <= r.delay <= 0.121 * 2 ** i for i, r in enumerate(retries)), [r.delay for r in retries]
    assert result.calls[0]["retries"] == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rlm_ask_answers_through_reset_500_reset(server: FakeLLM, transport: str) -> None:
    """What a terminal user runs: before, the two resets shared the refused-connection window and
    the run failed (exit 4, "is the server running?") after two of its four retries."""
    server.script("gpt-4o-mini", [Reply(reset=True), Reply(status=500), Reply(reset=True), LOOK, DONE])
    result = run_rlm("ask", str(FIXTURES / "contract.pdf"), "q", "--model", "openai/gpt-4o-mini", "--api-base",
                     server.base, "--no-cache", env={"RLM_RETRY_BASE": "0.05", "RLM_TRANSPORT": transport})
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("done") and len(server.calls("gpt-4o-mini")) == 5


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resets_only_use_up_the_retries_then_say_reset(server: FakeLLM, ws: Workspace, transport: str) -> None:
    server.responder("gpt-4o-mini", lambda p: Reply(reset=True))
    result = run(server, ws, transport, retries=3)
    assert result.status == "failed" and result.error_kind == "reset" and len(server.calls("gpt-4o-mini")) == 4
    assert "(after 3 retries)" in result.error and "reset" in result.error and "refused" not in result.error
    assert "is the server running?" not in result.error


def test_refusals_share_a_window_only_while_they_last(ws: Workspace) -> None:
    """Refused, refused, 500, refused, refused, answered: the 500 ends the first run of refusals, so
    the second starts its own two-second window (once, both together were past it)."""
    from rlmcli.engine.providers.base import ProviderError
    from rlmcli.engine.providers.scripted import ScriptedProvider

    refused = ProviderError("connection refused", "connection")
    provider = ScriptedProvider()
    provider.script("root", [refused, refused, ProviderError("boom", "server", 500), refused, refused, LOOK, DONE])
    rec = Recorder()
    result = ask_question(ws, "q", provider, rec, retries=6, retry_base=0.01)
    assert result.status == "answered"
    delays = [(r.reason, r.delay) for r in rec.of(ev.ModelRetry)]
    assert [d[0] for d in delays] == ["connection refused", "connection refused", "500", "connection refused",
                                      "connection refused"]
    assert [d[1] for d in delays if d[0] != "500"] == [0.2, 0.4, 0.2, 0.4]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("cut", [0.5, 0.0], ids=["half", "nothing"])
def test_a_reply_cut_short_is_retried_and_never_cached(server: FakeLLM, ws: Workspace, transport: str, stream: bool,
                                                       cut: float) -> None:
    """A body shorter than its Content-Length, or a stream that closes cleanly with no finish_reason
    and no [DONE], is a transport failure: retried, and only the whole reply reaches the cache."""
    server.script("gpt-4o-mini", [Reply(LOOK, cut=cut), LOOK, DONE])
    rec = Recorder()
    first = run(server, ws, transport, rec, stream=stream, cache=True)
    assert first.status == "answered" and [r.reason for r in rec.of(ev.ModelRetry)] == ["reply cut short"]
    assert [c.reply for c in rec.of(ev.ModelCall)] == [LOOK, DONE]
    again = run(server, ws, transport, stream=stream, cache=True)
    assert again.answer == first.answer and again.usage["cache_hits"] == 2 and len(server.requests) == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", [Reply(hang=True), Reply("x" * 200, drip=0.3), Reply("", endless=True)],
                         ids=["never-answers", "slow-drip", "endless-stream"])
def test_timeout_bounds_hung_dripping_and_endless_replies(server: FakeLLM, ws: Workspace, transport: str,
                                                          fault: Reply) -> None:
    """Each fault would hold the request for a minute or more (the drip sends ~400 bytes 0.3 s
    apart): the client walking away from every one of them is what the run's 1 s timeout did."""
    server.responder("gpt-4o-mini", lambda p: fault)
    result = ask_question(ws, "q", None, model="openai/gpt-4o-mini", api_base=server.base, transport=transport,
                          timeout=1.0, stream=fault.endless)
    assert result.status == "partial" and result.limit == "timeout"
    assert len(server.requests) >= 1 and server.wait_hangups(len(server.requests)) == len(server.requests)


def test_a_reply_that_stalls_midway_ends_at_the_deadline_not_a_read_timeout(server: FakeLLM) -> None:
    """httpx bounds each read, not the whole reply: here each read may wait 2 s, and the reply's
    first byte comes at once, then nothing for 30 s. The client's deadline (0.5 s) ends the
    blocked read by shutting the socket down, so what ends it is not httpx's read timeout."""
    import httpx

    from rlmcli.engine.providers import http_client

    server.responder("m", lambda p: Reply("x" * 50, drip=30.0))
    client = http_client.client()
    request = client.build_request("POST", server.base + "/chat/completions", json={"model": "m", "messages": []},
                                   timeout=httpx.Timeout(5.0, read=2.0),
                                   extensions={http_client.DEADLINE: time.monotonic() + 0.5})
    with pytest.raises(httpx.HTTPError) as caught:
        client.send(request).read()
    assert not isinstance(caught.value, httpx.ReadTimeout) and http_client.past(request)
    error = http_client.network_error(caught.value, request, 0.5)
    assert (error.kind, str(error)) == ("timeout", "no complete reply within 0.5 s")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_json_is_retried(server: FakeLLM, ws: Workspace, transport: str) -> None:
    server.script("gpt-4o-mini", [Reply(raw=b"{not json"), LOOK, DONE])
    result = run(server, ws, transport)
    assert result.answer == "done [contract.pdf p.4]" and len(server.calls("gpt-4o-mini")) == 3


def test_the_cache_knows_the_endpoint(ws: Workspace) -> None:
    one, two = FakeLLM().start(), FakeLLM().start()
    try:
        one.script("gpt-4o-mini", [LOOK, "```python\nFINAL('from one')\n```"])
        two.script("gpt-4o-mini", [LOOK, "```python\nFINAL('from two')\n```"])
        first = ask_question(ws, "q", None, model="openai/gpt-4o-mini", api_base=one.base, cache=True)
        second = ask_question(ws, "q", None, model="openai/gpt-4o-mini", api_base=two.base, cache=True)
        assert (first.answer, second.answer) == ("from one", "from two")
        again = ask_question(ws, "q", None, model="openai/gpt-4o-mini", api_base=two.base, cache=True)
        assert again.answer == "from two" and again.usage["cache_hits"] == 2 and len(two.requests) == 2
    finally:
        one.stop()
        two.stop()


def test_api_key_from_the_named_environment_variable(server: FakeLLM, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-abc")
    server.script("gpt-4o-mini", [LOOK, DONE])
    run(server, ws, "openai", api_key_env="MY_LLM_KEY")
    assert server.requests[0]["auth"] == "Bearer sk-test-abc"


# ---- the CLI: pre-flight and exit statuses --------------------------------------------------------

@pytest.mark.parametrize(("model", "variable"), [("openai/gpt-4o-mini", "OPENAI_API_KEY"),
                                                  ("anthropic/claude-3-5-sonnet-20240620", "ANTHROPIC_API_KEY")])
def test_a_missing_key_is_named_before_any_request(tmp_path: Path, model: str, variable: str) -> None:
    result = run_rlm("ask", str(FIXTURES / "notes.md"), "q", "--model", model, env={variable: None})
    assert result.returncode == 4
    err = result.stderr.decode()
    assert f"{model} needs an API key: set {variable} (export {variable}=...)" in err and "--api-key-env" in err
    assert "Traceback" not in err


def test_a_loopback_server_needs_no_key(server: FakeLLM) -> None:
    server.script("gpt-4o-mini", [LOOK, DONE])
    result = run_rlm("ask", str(FIXTURES / "contract.pdf"), "q", "--model", "openai/gpt-4o-mini",
                     "--api-base", server.base, "--no-cache", env={"OPENAI_API_KEY": None})
    assert result.returncode == 0, result.stderr
    assert server.requests[0]["auth"] == "Bearer sk-none"


def test_provider_errors_exit_4_in_one_line(server: FakeLLM) -> None:
    server.responder("gpt-4o-mini", lambda p: Reply(status=401))
    result = run_rlm("ask", str(FIXTURES / "contract.pdf"), "q", "--model", "openai/gpt-4o-mini",
                     "--api-base", server.base, "--no-cache")
    err = result.stderr.decode().strip().splitlines()
    assert result.returncode == 4 and err == [f"rlm: error: openai/gpt-4o-mini at {server.base}: HTTP 401: "
                                              "fake error 401 — check the API key (--api-key-env names the "
                                              "variable that holds it)"]


def test_refresh_asks_again_and_stores_the_new_reply(server: FakeLLM, ws: Workspace) -> None:
    server.script("gpt-4o-mini", [LOOK, "```python\nFINAL('old')\n```", LOOK, "```python\nFINAL('new')\n```"])
    first = ask_question(ws, "q", None, model="openai/gpt-4o-mini", api_base=server.base, cache=True)
    from rlmcli.ask import run_question
    from tests.conftest import make_settings

    fresh = run_question(make_settings(model="openai/gpt-4o-mini", api_base=server.base, cache=True), ws, "q",
                         refresh=True)
    cached = ask_question(ws, "q", None, model="openai/gpt-4o-mini", api_base=server.base, cache=True)
    assert (first.answer, fresh.answer, cached.answer) == ("old", "new", "new")
    assert fresh.usage["cache_hits"] == 0 and cached.usage["cache_hits"] == 2 and len(server.requests) == 4


def test_retries_show_in_the_tree_and_the_trace(server: FakeLLM, ws: Workspace) -> None:
    import io

    from rich.console import Console

    from rlmcli.trace.render import TraceTree
    from rlmcli.trace.store import load

    server.script("gpt-4o-mini", [Reply(status=503), LOOK, DONE])
    tree = TraceTree()
    result = ask_question(ws, "q", None, tree, model="openai/gpt-4o-mini", api_base=server.base)
    console = Console(file=io.StringIO(), record=True, width=120, color_system=None)
    console.print(tree.render())
    text = console.export_text()
    assert "↻ openai/gpt-4o-mini · retry 1/4 in " in text and ": 503" in text and "1 retry" in text
    saved = load(Path(result.trace))
    assert [(e.attempt, e.reason) for e in saved if isinstance(e, ev.ModelRetry)] == [(1, "503")]
    calls = [e for e in saved if isinstance(e, ev.ModelCall)]
    assert calls[0].retries == 1 and calls[0].reply == LOOK and "Question: q" in calls[0].prompt


def test_rlm_models_lists_and_checks(server: FakeLLM) -> None:
    import json

    server.responder("gpt-4o-mini", lambda p: "OK")
    listing = run_rlm("models", "--model", "openai/gpt-4o-mini", "--sub-model", "openai/gpt-4o-mini",
                      env={"OPENAI_API_KEY": None})
    assert listing.returncode == 0
    line = listing.stdout.decode().splitlines()[0].split("\t")
    assert line == ["root", "openai/gpt-4o-mini", "openai via openai-compatible (httpx)", "OPENAI_API_KEY NOT SET",
                    "128000", "$0.15 / $0.6"]  # off a terminal: tab-separated, plain numbers
    checked = run_rlm("models", "--check", "--json", "--model", "openai/gpt-4o-mini", "--api-base", server.base)
    data = json.loads(checked.stdout)
    assert checked.returncode == 0 and data["schema"] == "rlm.models/1"
    assert [(c["model"], c["ok"]) for c in data["checks"]] == [("openai/gpt-4o-mini", True)]
    server.responder("gpt-4o-mini", lambda p: Reply(status=404))
    failing = run_rlm("models", "--check", "--model", "openai/gpt-4o-mini", "--api-base", server.base)
    assert failing.returncode == 4 and "FAILED (not_found)" in failing.stdout.decode()


def test_look_reaches_the_vision_model_over_http_with_an_image_part(server: FakeLLM) -> None:
    server.script("gpt-4o-mini", ["```python\nprint(look('contract.pdf', 7, 'Which clauses are on this page?'))\n```",
                                  "```python\nFINAL('termination [contract.pdf p.7]')\n```"])
    server.responder("vision", lambda prompt: "Termination clauses 6.1-6.3.")
    result = run_rlm("ask", str(FIXTURES / "contract.pdf"), "q", "--model", "openai/gpt-4o-mini", "--api-base",
                     server.base, "--vision-model", "openai/vision", "--no-cache", "--json")
    assert result.returncode == 0, result.stderr
    content = server.calls("vision")[0]["messages"][0]["content"]
    assert [part["type"] for part in content] == ["text", "image_url"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
