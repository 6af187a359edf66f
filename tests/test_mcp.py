"""`rlm mcp` as agents use it: the official MCP client SDK over stdio against the real server process."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio  # the mcp extra brings it; `make test` installs the extra, so nothing here skips
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.conftest import FIXTURES, run_rlm
from tests.fakeserver import FakeLLM, Reply

TOOLS = {"list_documents", "search", "read_page", "grep", "ingest", "ask", "repl"}


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A directory the server starts in (its allowed root) holding a workspace 'deal'."""
    root = tmp_path / "root"
    root.mkdir()
    for name in ("contract.pdf", "notes.md", "contract.docx"):
        shutil.copy(FIXTURES / name, root / name)
    done = run_rlm("ingest", str(root / "contract.pdf"), str(root / "notes.md"), "-w", "deal")
    assert done.returncode == 0, done.stderr
    return root


def serve(params: StdioServerParameters, body: Callable[[Client], Awaitable[Any]], **client: Any) -> Any:
    """Run `body` against an `rlm mcp` server started with `params`, through the official client."""
    result: list[Any] = []

    async def main() -> None:
        async with Client(params, **client) as c:
            result.append(await body(c))

    anyio.run(main)
    return result[0]


def _session(root: Path, body: Callable[[Client], Awaitable[Any]], *args: str, **client: Any) -> Any:
    params = StdioServerParameters(command=sys.executable, args=["-m", "rlmcli", "mcp", "-w", "deal", *args],
                                   cwd=str(root), env=dict(os.environ))
    return serve(params, body, **client)


def tool_error(result: Any) -> str:
    assert result.is_error, result
    return str(result.content[0].text)




def test_tools_are_listed_with_schemas_a_model_can_follow(served: Path) -> None:
    async def body(c: Client) -> Any:
        return (await c.list_tools()).tools

    tools = {t.name: t for t in _session(served, body)}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 60, tool.name
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description"), (tool.name, name)
    assert tools["search"].input_schema["required"] == ["query"]
    assert tools["read_page"].input_schema["required"] == ["doc", "page"]
    assert tools["ingest"].input_schema["properties"]["paths"]["type"] == "array"
    assert tools["search"].input_schema["properties"]["k"]["maximum"] == 100
    assert "costs model calls" in tools["ask"].description.lower() and "free" in tools["search"].description.lower()


def test_search_read_grep_and_the_page_resource_cite_pages(served: Path) -> None:
    async def body(c: Client) -> Any:
        docs = await c.call_tool("list_documents", {})
        found = await c.call_tool("search", {"query": "termination for convenience", "k": 3})
        top = found.structured_content["passages"][0]
        page = await c.call_tool("read_page", {"doc": top["doc"], "page": top["page"]})
        hits = await c.call_tool("grep", {"pattern": r"Fees?\b", "doc": "contract*"})
        resource = await c.read_resource(page.structured_content["uri"])
        return docs, found, page, hits, resource

    docs, found, page, hits, resource = _session(served, body)
    assert {d["doc"] for d in docs.structured_content["documents"]} == {"contract.pdf", "notes.md"}
    top = found.structured_content["passages"][0]
    assert top["doc"] == "contract.pdf" and top["heading"] == "6. Termination"
    assert top["citation"] == f"[contract.pdf p.{top['page']} l.{top['line']}]"
    text = page.structured_content["text"]
    assert "Termination for convenience" in text and page.structured_content["citation"] == f"[contract.pdf p.{top['page']}]"
    shown = run_rlm("show", "contract.pdf", "--page", str(top["page"]), "-w", "deal")
    assert text.strip() in shown.stdout.decode()  # the same page the CLI shows
    assert page.structured_content["uri"] == f"rlm://deal/contract.pdf/{top['page']}"
    assert resource.contents[0].text == f"[contract.pdf p.{top['page']}]\n{text}"
    rows = hits.structured_content["hits"]
    assert rows and all(h["doc"] == "contract.pdf" and "fee" in h["text"].lower() for h in rows)
    assert rows[0]["citation"] == f"[contract.pdf p.{rows[0]['page']} l.{rows[0]['line']}]"


def test_bad_inputs_are_tool_errors_and_the_server_lives_on(served: Path) -> None:
    async def body(c: Client) -> Any:
        out = [await c.call_tool("read_page", {"doc": "nope.pdf", "page": 1}),
               await c.call_tool("read_page", {"doc": "contract.pdf", "page": 99}),
               await c.call_tool("search", {"query": "   "}),
               await c.call_tool("search", {"query": "fees", "doc": "missing-*"}),
               await c.call_tool("grep", {"pattern": "(unclosed"}),
               await c.call_tool("list_documents", {"workspace": "no-such-ws"}),
               await c.call_tool("repl", {"code": "1", "session": "feedface"}),
               await c.call_tool("ask", {"question": "what are the fees?"}),  # this server has no model
               await c.call_tool("list_documents", {})]
        return out

    *errors, alive = _session(served, body)
    messages = [tool_error(r) for r in errors]
    assert "nope.pdf" in messages[0]
    assert "contract.pdf has pages 1 to 8, not 99" in messages[1]
    assert "empty query" in messages[2]
    assert "no document matches 'missing-*'" in messages[3]
    assert "grep failed" in messages[4] and "Traceback" not in messages[4]
    assert "no-such-ws" in messages[5]
    assert "no repl session 'feedface'" in messages[6]
    assert "no model" in messages[7].lower() and "--model" in messages[7]
    assert not alive.is_error and alive.structured_content["documents"]


def test_ingest_reads_only_under_allowed_roots(served: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\nthe vault word is zebraquartz\n")
    (served / "link.md").symlink_to(outside / "secret.md")  # a link out of the allowed root

    async def body(c: Client) -> Any:
        return [await c.call_tool("ingest", {"paths": ["contract.docx"], "workspace": "deal"}),
                await c.call_tool("ingest", {"paths": [str(outside / "secret.md")]}),
                await c.call_tool("ingest", {"paths": ["link.md"]}),
                await c.call_tool("ingest", {"paths": ["../outside/secret.md"]}),
                await c.call_tool("ask", {"question": "what is the vault word?", "files": [str(outside / "secret.md")]}),
                await c.call_tool("search", {"query": "zebraquartz"})]

    ok, refused, linked, dotted, asked, search = _session(served, body)
    assert not ok.is_error and ok.structured_content["added"] == ["contract.docx"]
    for r in (refused, linked, dotted, asked):
        assert "outside the allowed roots" in tool_error(r)
    assert not search.structured_content["passages"]  # nothing of the secret got in

    async def allowed(c: Client) -> Any:
        return await c.call_tool("ingest", {"paths": [str(outside / "secret.md")], "workspace": "deal"})

    assert _session(served, allowed, "--allow", str(outside)).structured_content["added"] == ["secret.md"]


def test_ask_runs_end_to_end_with_progress(served: Path, server: FakeLLM) -> None:
    server.script("root", [
        "```python\nprint(search('termination for convenience', k=2))\n```",
        "```python\nFINAL('Either party may terminate; the Customer for convenience [contract.pdf p.7].')\n```",
    ])
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def body(c: Client) -> Any:
        return await c.call_tool("ask", {"question": "What are the termination clauses?"}, progress_callback=on_progress)

    result = _session(served, body, "--model", "openai/root", "--api-base", server.base, "--no-cache")
    record = result.structured_content
    assert not result.is_error, result
    assert record["schema"] == "rlm.answer/1" and record["status"] == "answered"
    assert record["answer"].startswith("Either party may terminate")
    assert record["citations"][0]["doc"] == "contract.pdf" and record["citations"][0]["page"] == 7
    assert record["run_id"] and "usage" in record
    assert [m for _, _, m in progress][:2] == ["iteration 1", "iteration 2"] and progress[-1][2] == "done"
    assert [p for p, _, _ in progress] == sorted(p for p, _, _ in progress)
    assert "sk-" not in str(record)


def test_repl_sessions_keep_state_and_are_sandboxed(served: Path) -> None:
    async def body(c: Client) -> Any:
        first = await c.call_tool("repl", {"code": "hits = grep('Termination')\nn = len(hits)\nprint(n)"})
        sid = first.structured_content["session"]
        second = await c.call_tool("repl", {"code": "import os; os.write(1, b'stray bytes on fd 1\\n'); print(n * 2)",
                                            "session": sid})
        other = await c.call_tool("repl", {"code": "print('n' in dir())"})
        escape = await c.call_tool("repl", {"code": "print(open('/etc/passwd').read()[:20])", "session": sid})
        after = await c.call_tool("repl", {"code": "print(n)", "session": sid})
        no_model = await c.call_tool("repl", {"code": "print(llm_query('hi'))", "session": sid})
        return first, second, other, escape, after, no_model

    first, second, other, escape, after, no_model = _session(served, body)
    n = int(first.structured_content["output"].strip())
    assert n > 0
    assert str(n * 2) in second.structured_content["output"]  # the variable survived; stray fd-1 bytes broke nothing
    assert other.structured_content["session"] != first.structured_content["session"]
    assert other.structured_content["output"].strip() == "False"  # a new session starts empty
    assert escape.structured_content["error"] and "root:" not in escape.structured_content["output"]
    assert after.structured_content["output"].strip() == str(n)
    assert "llm_query is unavailable here" in no_model.structured_content["output"]


def test_llm_query_in_the_repl_uses_the_client_model_through_sampling(served: Path) -> None:
    from mcp import types

    asked: list[str] = []

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params.messages[0].content.text)  # type: ignore[union-attr]
        return types.CreateMessageResult(role="assistant", model="client-model",
                                         content=types.TextContent(type="text", text="forty-two"))

    async def body(c: Client) -> Any:
        return await c.call_tool("repl", {"code": "print(llm_query('what is six times seven?'))"})

    # A handshake-era connection (what most clients speak) can carry the server's sampling request.
    result = _session(served, body, sampling_callback=sampling, mode="legacy")
    assert result.structured_content["output"].strip() == "forty-two"
    assert asked == ["what is six times seven?"]
    # MCP 2026-07-28 connections have no server-to-client channel: a clear message, not a hang.
    modern = _session(served, body, sampling_callback=sampling)
    assert "no channel for sampling requests" in modern.structured_content["output"] and len(asked) == 1


def test_two_calls_at_once_are_served_concurrently(served: Path, server: FakeLLM) -> None:
    server.script("root", [Reply("```python\nprint(len(grep('fee')))\n```", delay=3.0),
                           "```python\nFINAL('done [contract.pdf p.1]')\n```"])
    order: list[str] = []

    async def body(c: Client) -> Any:
        async def slow() -> None:
            await c.call_tool("ask", {"question": "What are the fees?"})
            order.append("ask")

        async def quick() -> None:
            await anyio.sleep(0.5)  # the ask is waiting on the model by now
            result = await c.call_tool("search", {"query": "fees"})
            assert result.structured_content["passages"]
            order.append("search")

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            tg.start_soon(quick)
        return order

    assert _session(served, body, "--model", "openai/root", "--api-base", server.base, "--no-cache") == ["search", "ask"]
