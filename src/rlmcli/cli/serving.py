"""`rlm mcp`: serve workspaces to agents over the Model Context Protocol (stdio)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from rlmcli.cli.app import WorkspaceOpt, app, examples, handle_errors, say
from rlmcli.options import run_options


@app.command("mcp", epilog=examples("rlm mcp -w deal --model openai/gpt-4o-mini",
                                    "rlm mcp --allow ~/contracts --allow /data/filings --max-cost 0.50"))
@handle_errors
@run_options(extra_help={"max_cost": " (Per ask call.)", "timeout": " (Per ask call.)"})
def mcp_cmd(
    workspace: Optional[str] = WorkspaceOpt,
    allow: Optional[list[Path]] = typer.Option(None, "--allow", metavar="DIR",
                                               help="Another directory the ingest tool may read (repeatable). "
                                               "Always allowed: the directory the server starts in."),
    max_sessions: int = typer.Option(8, "--max-sessions", min=1, max=256, metavar="N",
                                     help="repl sessions open at once (each one sandbox process); past it the "
                                     "least recently used idle one is closed, and when all run cells a call is told the server is busy."),
    idle: float = typer.Option(1800.0, "--idle", min=0.1, metavar="SECONDS",
                               help="Close a repl session unused this long (grep's warm sandboxes: at most 5 minutes)."),
    *, flags: dict[str, Any],
) -> None:
    """Serve workspaces to MCP clients (Claude Code, Cursor, VS Code, Zed...) over stdio: list, search, read, grep, ingest, ask and a persistent repl."""
    from rlmcli.config import Settings
    from rlmcli.errors import UsageError

    settings = Settings.resolve(flags)
    if settings.model:
        from rlmcli.ask import check_prices

        for line in check_prices(settings):  # an unenforceable --max-cost: exit 2 before serving
            say(f"rlm: {line}")
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise UsageError("rlm mcp needs the optional extra: pip install 'rlmcli[mcp]'") from None
    roots = [Path.cwd()]
    for d in allow or []:
        if not d.expanduser().is_dir():
            raise UsageError(f"--allow {d}: not a directory")
        roots.append(d.expanduser())
    from rlmcli.serve.mcp_server import serve_stdio

    serve_stdio(settings, roots, workspace, max_sessions, idle)
