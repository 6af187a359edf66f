"""The sandbox: a persistent Python REPL over a workspace that model-written code cannot escape.

Names are loaded lazily: the child kernel imports this package too, and must not pay for the
parent side (subprocess, dataclasses, ...) at every start.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CellResult", "Sandbox", "SandboxError"]


def __getattr__(name: str) -> Any:
    if name == "CellResult":
        from rlmcli.sandbox.interface import CellResult

        return CellResult
    if name in __all__:
        from rlmcli.sandbox import process

        return getattr(process, name)
    raise AttributeError(name)
