"""`rlm mcp`: the workspace, search, the sandbox and full recursive runs as MCP tools over stdio.

Every tool body runs on a worker thread (the SDK serves requests concurrently), every failure is
a tool error with one clear line (never a crashed server), and nothing but protocol messages is
written to stdout: the SDK points fd 1 at stderr while it serves, so a stray print, or a child
process, cannot corrupt the stream. Provider keys stay in this process.
"""


import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field

from rlmcli import __version__
from rlmcli.config import Settings
from rlmcli.errors import RlmError
from rlmcli.serve.access import Access, parse_part
from rlmcli.serve.tools import GREP_HITS, Tools, progress_messages

T = TypeVar("T")
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
    if isinstance(exc, RlmError):
        return str(exc)
    if isinstance(exc, (ValueError, KeyError, TypeError, PermissionError, FileNotFoundError)):
        return str(exc).strip("'\"") or type(exc).__name__
    return f"internal error ({type(exc).__name__}: {exc}); the server is still running"


WS = Annotated[str | None, Field(description="Workspace name, auto:KEY or path; default: the server's -w.")]
DOC = Annotated[str | None, Field(description="Only this document: an id from list_documents, or a glob like 'contoso-*'.")]


def build_server(settings: Settings, access: Access) -> tuple[Any, Tools]:
    import anyio
    import anyio.from_thread
    import anyio.lowlevel
    import anyio.to_thread
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ToolError

    server = MCPServer("rlm", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    tools = Tools(settings, access)

    async def off_loop(fn: Callable[[], T]) -> T:
        """Run blocking work on a thread; any failure becomes a tool error with its message."""
        try:
            return await anyio.to_thread.run_sync(fn)
        except Exception as exc:  # noqa: BLE001 - one clear line to the client, the server lives on
            logging.getLogger("rlmcli.mcp").info("tool failed: %s", exc)
            raise ToolError(_failure(exc)) from None

    read_only: Any = {"readOnlyHint": True}

    @server.tool(annotations=read_only)
    async def list_documents(workspace: WS = None) -> dict[str, Any]:
        """List the documents of a workspace: id (use it as `doc`), title, type, pages and tokens. Free: no model call."""
        return await off_loop(lambda: tools.list_documents(workspace))

    @server.tool(annotations=read_only)
    async def search(
        query: Annotated[str, Field(description="Words to look for; naming a document (title, company, form, year) ranks it first.")],
        workspace: WS = None, doc: DOC = None,
        k: Annotated[int, Field(description="How many passages.", ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        """Ranked full-text search (BM25, stemmed, headings weigh more). Returns passages with doc, page, line, heading, text and a citation string like [doc p.12 l.4]. Free: no model call."""
        return await off_loop(lambda: tools.search(query, workspace, doc, k))

    @server.tool(annotations=read_only)
    async def read_page(
        doc: Annotated[str, Field(description="A document id from list_documents (or its file name).")],
        page: Annotated[int, Field(description="Page number, 1-based.")],
        workspace: WS = None,
    ) -> dict[str, Any]:
        """The full text of one page, with its citation. Also available as the resource rlm://<workspace>/<doc>/<page>. Free: no model call."""
        return await off_loop(lambda: tools.read_page(doc, page, workspace))

    @server.tool(annotations=read_only)
    async def grep(
        pattern: Annotated[str, Field(description="A Python regular expression, matched per line, case-insensitive.")],
        workspace: WS = None, doc: DOC = None,
        max_hits: Annotated[int, Field(description="Stop after this many hits.", ge=1, le=2000)] = GREP_HITS,
    ) -> dict[str, Any]:
        """Exact regex search over every page: hits with doc, page, line, the line's text and a citation. Runs in the sandbox (a slow pattern times out, it cannot hang the server). Free: no model call."""
        return await off_loop(lambda: tools.grep(pattern, workspace, doc, max_hits))

    @server.tool(annotations={"destructiveHint": False})  # type: ignore[arg-type]
    async def ingest(
        paths: Annotated[list[str], Field(description="Files or directories under the server's allowed roots.", min_length=1)],
        workspace: Annotated[str | None, Field(description="Workspace to add to (created if new); default: the server's -w, else an automatic one named in the result.")] = None,
    ) -> dict[str, Any]:
        """Ingest files and directories into a workspace (PDF, DOCX, PPTX, XLSX, CSV, HTML, Markdown, mail, code...). Unchanged files cost nothing; one bad file does not stop the others. Free: no model call."""
        return await off_loop(lambda: tools.ingest(paths, workspace))

    @server.tool(annotations={"readOnlyHint": True, "openWorldHint": True})  # type: ignore[arg-type]
    async def ask(
        question: Annotated[str, Field(description="The question, in full.")],
        ctx: Context,
        workspace: WS = None,
        files: Annotated[list[str] | None, Field(description="Files to ingest first (under the allowed roots); the question is then asked over them.")] = None,
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
            except Exception:  # noqa: BLE001, S110 - progress is best effort; the run goes on
                pass

        return await off_loop(lambda: tools.ask(question, workspace, files, progress_messages(report), schema, schema_multi))

    @server.tool(annotations=read_only)
    async def repl(
        code: Annotated[str, Field(description="Python to run. Helpers: read(doc, page), grep(pattern), search(query), docs(query), ls(), llm_query(prompt), SHOW_VARS(); print what you want to see.")],
        ctx: Context,
        session: Annotated[str | None, Field(description="A session id from an earlier call, to keep its variables; omit to start a new session.")] = None,
        workspace: Annotated[str | None, Field(description="Workspace for a new session; default: the server's -w.")] = None,
    ) -> dict[str, Any]:
        """Run Python in a persistent sandbox over a workspace (no network, no writes outside its scratch directory, time and memory limits). Variables survive between calls with the same session id. Output is capped at 20,000 characters. llm_query inside it uses the server's sub-model (costs model calls) or, without one, the client's model through MCP sampling."""
        token = anyio.lowlevel.current_token()

        def sample(prompt: str) -> str:
            return str(anyio.from_thread.run(_sample, ctx, prompt, token=token))

        return await off_loop(lambda: tools.repl(code, session, workspace, None if settings.model else sample))

    @server.resource("rlm://{workspace}/{doc}/{page}", name="page", mime_type="text/plain",
                     description="One page of a document: rlm://<workspace>/<doc>/<page>, parts percent-encoded.")
    async def page_resource(workspace: str, doc: str, page: str) -> str:
        def work() -> str:
            number = int(page) if page.isdigit() else 0
            name, number, _, text = tools.page_text(parse_part(workspace), parse_part(doc), number)
            return f"[{name} p.{number}]\n{text}"
        try:
            return await anyio.to_thread.run_sync(work)
        except Exception as exc:  # noqa: BLE001
            raise ResourceError(_failure(exc)) from None

    return server, tools


async def _sample(ctx: Any, prompt: str) -> str:
    """One llm_query answered by the client's own model (MCP sampling)."""
    from mcp.types import SamplingMessage, TextContent

    caps = ctx.client_capabilities
    if caps is None or getattr(caps, "sampling", None) is None:
        raise PermissionError("no model is configured for this server (rlm mcp --model ...) and the client does "
                              "not offer sampling: llm_query is unavailable here")
    import warnings

    try:
        with warnings.catch_warnings():  # deprecated in MCP 2026-07-28, still what handshake-era clients offer
            warnings.simplefilter("ignore")
            result = await ctx.session.create_message(
                [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=4000)
    except Exception as exc:
        if "back-channel" in str(exc):
            raise PermissionError("this client connection has no channel for sampling requests (MCP 2026-07-28 "
                                  "connections have none): start the server with --model to serve llm_query") from None
        raise
    content = result.content
    return content.text if isinstance(content, TextContent) else str(content)


def serve_stdio(settings: Settings, roots: list[Path], default_workspace: str | None) -> None:
    import anyio

    server, tools = build_server(settings, Access(roots, default_workspace))
    try:
        anyio.run(server.run_stdio_async)
    finally:
        from rlmcli.batch.work import close_idle_sandboxes

        tools.close()  # repl sessions
        close_idle_sandboxes()  # grep's pooled sandboxes

