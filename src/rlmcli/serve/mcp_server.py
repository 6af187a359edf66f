"""`rlm mcp`: the workspace, search, the sandbox and full recursive runs as MCP tools over stdio.

Every argument is bounded in the tools' schemas, so the SDK refuses an oversized one before any
work. Every tool body runs on the bounded pool for its kind of work (pools.py: a busy reply when
full, so `list_documents` and `read_page` answer at once whatever else runs), every failure is a
tool error with one clear line (never a crashed server), and closing stdin stops the work in
flight and ends the server. Nothing but protocol messages is written to stdout: the SDK points
fd 1 at stderr while it serves, so a stray print, or a child process, cannot corrupt the stream.
Provider keys stay in this process.
"""


import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field

from rlmcli import __version__
from rlmcli.config import Settings
from rlmcli.errors import RlmError, redact
from rlmcli.serve.access import Access
from rlmcli.serve.pools import Pool, Ticket
from rlmcli.serve.sessions import IDLE_SECONDS, MAX_SESSIONS
from rlmcli.serve.tools import GREP_HITS, Tools, progress_messages
from rlmcli.workspace.query import QUERY_CHARS
from rlmcli.workspace.reader import NAME_CHARS

T = TypeVar("T")
# Argument bounds, checked by the SDK against the schemas before a tool runs.
SPEC_CHARS = 4_096  # a workspace name or path, an input path (PATH_MAX)
PATHS = 1_000  # paths in one ingest
PATTERN_CHARS = 2_000  # a grep regex
CODE_CHARS = 1 << 20  # a repl cell: far below the sandbox channel's 16 MiB frame, however it encodes
QUESTION_CHARS = 100_000
SESSION_CHARS = 64
INSTRUCTIONS = """\
rlm holds workspaces: documents (PDF, DOCX, mail, slides, sheets, code...) turned into numbered
pages with a full-text index. Cite pages as [doc p.N]. Typical use: list_documents, then search
(ranked passages) or grep (exact regex), then read_page for the pages that matter. For a question
that needs reading many pages, call ask: a full recursive run with the server's model, which
returns an answer with verified page citations (it costs model calls). repl runs Python in a
sandbox over the workspace with helpers (read, grep, search, docs, llm_query), keeping variables
between calls: use it to do the exploration yourself.
"""


def _failure(exc: BaseException) -> str:
    """One line for the client: never longer than a few hundred characters, never a credential."""
    if isinstance(exc, RlmError):
        text = str(exc)
    elif isinstance(exc, (ValueError, KeyError, TypeError, PermissionError, FileNotFoundError)):
        text = str(exc).strip("'\"") or type(exc).__name__
    else:
        text = f"internal error ({type(exc).__name__}: {exc}); the server is still running"
    return redact(text if len(text) <= 2000 else text[:2000] + " [...]")


WS = Annotated[str | None, Field(description="Workspace name, auto:KEY or path; default: the server's -w.",
                                 max_length=SPEC_CHARS)]
DOC = Annotated[str | None, Field(description="Only this document: an id from list_documents, or a glob like 'contoso-*'.",
                                  max_length=NAME_CHARS)]


def build_server(settings: Settings, access: Access, max_sessions: int = MAX_SESSIONS,
                 idle: float = IDLE_SECONDS) -> tuple[Any, Tools]:
    import anyio
    import anyio.from_thread
    import anyio.lowlevel
    from mcp.server.mcpserver import Context, MCPServer, ResourceSecurity
    from mcp.server.mcpserver.exceptions import ResourceError, ToolError

    server = MCPServer("rlm", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    tools = Tools(settings, access, max_sessions, idle)
    pools = tools.pools

    async def off_loop(pool: Pool, fn: Callable[[Ticket], T], error: type[Exception] = ToolError) -> T:
        """Run blocking work on its pool; any failure (a busy pool too) becomes one clear error."""
        try:
            return await pool.run(fn)
        except Exception as exc:  # noqa: BLE001 - one clear line to the client, the server lives on
            logging.getLogger("rlmcli.mcp").info("tool failed: %s", exc)
            raise error(_failure(exc)) from None

    read_only: Any = {"readOnlyHint": True}

    @server.tool(annotations=read_only)
    async def list_documents(workspace: WS = None) -> dict[str, Any]:
        """List the documents of a workspace: id (use it as `doc`), title, type, pages and tokens. Free: no model call."""
        return await off_loop(pools.quick, lambda _: tools.list_documents(workspace))

    @server.tool(annotations=read_only)
    async def search(
        query: Annotated[str, Field(description="Words to look for; naming a document (title, company, form, year) ranks it first.",
                                    max_length=QUERY_CHARS)],
        workspace: WS = None, doc: DOC = None,
        k: Annotated[int, Field(description="How many passages.", ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        """Ranked full-text search (BM25, stemmed, headings weigh more). Returns passages with doc, page, line, heading, text and a citation string like [doc p.12 l.4]. Free: no model call."""
        return await off_loop(pools.search, lambda t: tools.search(query, workspace, doc, k, t))

    @server.tool(annotations=read_only)
    async def read_page(
        doc: Annotated[str, Field(description="A document id from list_documents (or its file name).", max_length=NAME_CHARS)],
        page: Annotated[int, Field(description="Page number, 1-based.")],
        workspace: WS = None,
    ) -> dict[str, Any]:
        """The full text of one page, with its citation. Also available as the resource rlm://<workspace>/<doc>/<page>. Free: no model call."""
        return await off_loop(pools.quick, lambda _: tools.read_page(doc, page, workspace))

    @server.tool(annotations=read_only)
    async def grep(
        pattern: Annotated[str, Field(description="A Python regular expression, matched per line, case-insensitive.",
                                      max_length=PATTERN_CHARS)],
        workspace: WS = None, doc: DOC = None,
        max_hits: Annotated[int, Field(description="Stop after this many hits.", ge=1, le=2000)] = GREP_HITS,
    ) -> dict[str, Any]:
        """Exact regex search over every page: hits with doc, page, line, the line's text and a citation. Runs in the sandbox (a slow pattern times out, it cannot hang the server). Free: no model call."""
        return await off_loop(pools.grep, lambda t: tools.grep(pattern, workspace, doc, max_hits, t))

    @server.tool(annotations={"destructiveHint": False})  # type: ignore[arg-type]
    async def ingest(
        paths: Annotated[list[Annotated[str, Field(max_length=SPEC_CHARS)]],
                         Field(description="Files or directories under the server's allowed roots.", min_length=1,
                               max_length=PATHS)],
        workspace: Annotated[str | None, Field(description="Workspace to add to (created if new); default: the server's -w, else an automatic one named in the result.",
                                               max_length=SPEC_CHARS)] = None,
    ) -> dict[str, Any]:
        """Ingest files and directories into a workspace (PDF, DOCX, PPTX, XLSX, CSV, HTML, Markdown, mail, code...). Unchanged files cost nothing; one bad file does not stop the others. Free: no model call."""
        return await off_loop(pools.ingest, lambda _: tools.ingest(paths, workspace))

    @server.tool(annotations={"readOnlyHint": True, "openWorldHint": True})  # type: ignore[arg-type]
    async def ask(
        question: Annotated[str, Field(description="The question, in full.", max_length=QUESTION_CHARS)],
        ctx: Context,
        workspace: WS = None,
        files: Annotated[list[Annotated[str, Field(max_length=SPEC_CHARS)]] | None,
                         Field(description="Files to ingest first (under the allowed roots); the question is then asked over them.",
                               max_length=PATHS)] = None,
        schema: Annotated[dict[str, Any] | str | None, Field(description="Answer as structured data: a JSON Schema object, or fields like 'notice_days int, governing_law: the country'. The result's `data` holds the validated object; each field's citations are checked.")] = None,
        schema_multi: Annotated[bool, Field(description="With schema: a list of such objects, as {\"items\": [...]}.")] = False,
    ) -> dict[str, Any]:
        """Answer a question with a full recursive run (the server's model reads, greps and calls sub-models in a sandbox). Returns the answer with page citations checked against the text, status (answered, partial, failed), usage with cost in US dollars, and the run id; with `schema`, the validated object in `data`. Costs model calls within the server's budgets; progress is reported while it runs."""
        token = anyio.lowlevel.current_token()
        steps = [0]

        def report(message: str) -> None:
            steps[0] += 1
            total = max(float(settings.max_iterations), float(steps[0]))
            try:
                anyio.from_thread.run(ctx.report_progress, float(steps[0]), total, message, token=token)
            except Exception:  # noqa: BLE001 - progress is best effort; the run goes on
                pass

        return await off_loop(pools.ask, lambda t: tools.ask(question, workspace, files, progress_messages(report), t,
                                                             schema, schema_multi))

    @server.tool(annotations=read_only)
    async def repl(
        code: Annotated[str, Field(description="Python to run. Helpers: read(doc, page), grep(pattern), search(query), docs(query), ls(), llm_query(prompt), SHOW_VARS(); print what you want to see.",
                                   max_length=CODE_CHARS)],
        ctx: Context,
        session: Annotated[str | None, Field(description="A session id from an earlier call, to keep its variables; omit to start a new session.",
                                             max_length=SESSION_CHARS)] = None,
        workspace: Annotated[str | None, Field(description="Workspace for a new session; default: the server's -w.",
                                               max_length=SPEC_CHARS)] = None,
    ) -> dict[str, Any]:
        """Run Python in a persistent sandbox over a workspace (no network, no writes outside its scratch directory, time and memory limits). Variables survive between calls with the same session id. Output is capped at 20,000 characters. llm_query inside it uses the server's sub-model (costs model calls) or, without one, the client's model through MCP sampling."""
        token = anyio.lowlevel.current_token()

        def sample(prompt: str) -> str:
            return str(anyio.from_thread.run(_sample, ctx, prompt, token=token))

        return await off_loop(pools.repl, lambda t: tools.repl(code, session, workspace,
                                                              None if settings.model else sample, t))

    # The SDK decodes each part once; a path workspace is absolute (Access checks it against the
    # roots) and a document is only ever looked up by name, so neither needs the SDK's path checks.
    @server.resource("rlm://{workspace}/{doc}/{page}", name="page", mime_type="text/plain",
                     description="One page of a document: rlm://<workspace>/<doc>/<page>, parts percent-encoded.",
                     security=ResourceSecurity(exempt_params={"workspace", "doc"}))
    async def page_resource(workspace: str, doc: str, page: str) -> str:
        def work(_ticket: Ticket) -> str:
            if len(workspace) > SPEC_CHARS or len(doc) > NAME_CHARS or len(page) > 12:
                raise ValueError("a part of the URI is too long")
            number = int(page) if page.isdigit() else 0
            name, number, _, text = tools.page_text(workspace, doc, number)
            return f"[{name} p.{number}]\n{text}"
        return await off_loop(pools.quick, work, ResourceError)

    return server, tools


async def _sample(ctx: Any, prompt: str) -> str:
    """One llm_query answered by the client's own model (MCP sampling)."""
    from mcp.types import SamplingMessage, TextContent

    caps = ctx.client_capabilities
    if caps is None or getattr(caps, "sampling", None) is None:
        raise PermissionError("no model is configured for this server (rlm mcp --model ...) and the client does "
                              "not offer sampling: llm_query is unavailable here")
    import warnings

    from mcp.shared.exceptions import NoBackChannelError

    try:
        with warnings.catch_warnings():  # deprecated in MCP 2026-07-28, still what handshake-era clients offer
            warnings.simplefilter("ignore")
            result = await ctx.session.create_message(
                [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=4000)
    except NoBackChannelError:
        raise PermissionError("this client connection has no channel for sampling requests (MCP 2026-07-28 "
                              "connections have none): start the server with --model to serve llm_query") from None
    content = result.content
    return content.text if isinstance(content, TextContent) else str(content)


def _watch_stdin(on_eof: Callable[[], None]) -> None:
    """Put a pipe between stdin and the SDK, so this process learns the moment the client closes
    stdin: the SDK would otherwise wait for every call in flight before it ended."""
    try:
        real = os.dup(0)
    except OSError:  # no stdin at all: the SDK ends at once anyway
        return
    read_end, write_end = os.pipe()
    os.dup2(read_end, 0)
    os.close(read_end)

    def pump() -> None:
        try:
            while chunk := os.read(real, 1 << 16):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(write_end, view):]
        except OSError:
            pass
        finally:
            on_eof()
            os.close(write_end)
            os.close(real)

    threading.Thread(target=pump, name="rlm-stdin", daemon=True).start()


def serve_stdio(settings: Settings, roots: list[Path], default_workspace: str | None,
                max_sessions: int = MAX_SESSIONS, idle: float = IDLE_SECONDS) -> None:
    import anyio
    import anyio.from_thread
    import anyio.lowlevel

    server, tools = build_server(settings, Access(roots, default_workspace), max_sessions, idle)

    async def main() -> None:
        token = anyio.lowlevel.current_token()
        with anyio.CancelScope() as scope:
            def on_eof() -> None:  # the client is gone: stop what runs, then end the server
                tools.shutdown()
                with contextlib.suppress(Exception):
                    anyio.from_thread.run_sync(scope.cancel, token=token)

            _watch_stdin(on_eof)
            await server.run_stdio_async()

    try:
        anyio.run(main)
    finally:
        tools.shutdown()
        finished = tools.close()
    if not finished:  # a call still runs (a model request, an ingest): nobody waits for its answer
        sys.stderr.flush()
        os._exit(0)

