"""What the shell offers on Tab (`rlm --install-completion`): setting names and their choices,
sandbox levels, executors, OCR modes, workspace names and the documents of a workspace.

Each function runs in a completion request, so it stays cheap: no heavy imports, nothing written,
and any failure completes nothing rather than printing a traceback into the shell. An empty list
lets bash fall back to file names (its completion is installed with `-o default`), which is what
`-w ./path` wants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

Items = list[tuple[str, str]]


def _matching(choices: Items, incomplete: str) -> Items:
    return [(value, help_text) for value, help_text in choices if value.startswith(incomplete)]


def _quiet(fn: Callable[..., Items]) -> Callable[..., Items]:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Items:
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a broken workspace must not break the user's shell
            return []

    return wrapper


@_quiet
def settings(incomplete: str) -> Items:
    from rlmcli.config import SPECS

    return _matching([(s.name, s.help) for s in SPECS], incomplete)


CHOICES = {
    "sandbox": (("auto", "every layer the kernel allows"), ("strict", "refuse to run without a kernel filesystem "
                "and network boundary"), ("basic", "the audit hook and rlimits only")),
    "ocr": (("auto", "OCR pages without a usable text layer"), ("always", "OCR every page"),
            ("never", "no OCR")),
    "transport": (("auto", "the fast path for openai/ models, litellm for the rest"), ("openai", "the fast path"),
                  ("litellm", "litellm for every model")),
    "cache": (("true", "use the response cache"), ("false", "do not")),
    "executor": (("local", "this machine"), ("ray", "a Ray cluster (RAY_ADDRESS)")),
}


@_quiet
def setting_value(ctx: click.Context, incomplete: str) -> Items:
    """`rlm config set sandbox <Tab>`: the setting's choices, when it has any."""
    return _matching(list(CHOICES.get(str(ctx.params.get("key") or ""), ())), incomplete)


@_quiet
def sandbox_levels(incomplete: str) -> Items:
    return _matching(list(CHOICES["sandbox"]), incomplete)


@_quiet
def ocr_modes(incomplete: str) -> Items:
    return _matching(list(CHOICES["ocr"]), incomplete)


@_quiet
def executors(incomplete: str) -> Items:
    return _matching(list(CHOICES["executor"]), incomplete)


@_quiet
def workspaces(incomplete: str) -> Items:
    """Named workspaces and automatic ones (`auto:KEY`, described by what they hold); a path
    (anything with a '/') is left to the shell's file completion."""
    if "/" in incomplete or incomplete.startswith(("~", ".")):
        return []
    import json

    from rlmcli.config import auto_workspaces_dir, workspaces_dir

    found: Items = []
    for base, prefix in ((workspaces_dir(), ""), (auto_workspaces_dir(), "auto:")):
        if not base.is_dir():
            continue
        for path in sorted(base.iterdir()):
            manifest = path / "manifest.json"
            if not manifest.is_file():
                continue
            docs = list(json.loads(manifest.read_text(encoding="utf-8")).get("documents") or {})
            about = ", ".join(docs[:3]) + (f" +{len(docs) - 3}" if len(docs) > 3 else "")
            found.append((prefix + path.name, about))
    return _matching(found, incomplete)


@_quiet
def documents(ctx: click.Context, incomplete: str) -> Items:
    """The documents of -w's workspace (given before the Tab), else of the one used last."""
    from rlmcli.workspace.ingest import workspace_path
    from rlmcli.workspace.reader import WorkspaceReader
    from rlmcli.workspace.registry import most_recent_root

    spec = ctx.params.get("workspace")
    root = workspace_path(str(spec)) if spec else most_recent_root()
    docs = WorkspaceReader(root).documents
    return _matching([(doc, f"{rec.get('type', '')}, {rec.get('pages', 0)} pages") for doc, rec in docs.items()],
                     incomplete)
