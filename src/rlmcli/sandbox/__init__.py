"""The sandbox: a persistent Python REPL over a workspace that model-written code cannot escape."""

from rlmcli.sandbox.process import CellResult, Sandbox, SandboxError

__all__ = ["CellResult", "Sandbox", "SandboxError"]
