"""The `rlm` command: parse arguments, call the library, render. Nothing else lives here.

Each module holds a few commands; heavy modules (litellm, PDFium, python-docx, Rich) are imported
inside the commands that use them, so `rlm --help` stays fast.
"""

from rlmcli.cli import asking, batching, chatting, documents, runs, serving, settings, workspaces  # noqa: F401 - registers commands
from rlmcli.cli.app import app, main

__all__ = ["app", "main"]
