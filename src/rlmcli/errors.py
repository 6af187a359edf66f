"""Exception types and process exit statuses."""

from __future__ import annotations

import re
from enum import IntEnum


class ExitStatus(IntEnum):
    """Exit statuses of every `rlm` command (documented in the README)."""

    OK = 0
    ERROR = 1  # something failed (for ingest: at least one input could not be ingested)
    USAGE = 2  # bad flags or arguments
    PARTIAL = 3  # a budget was reached; the answer is partial
    PROVIDER = 4  # the model provider failed
    INTERRUPTED = 130


class RlmError(Exception):
    """An error the CLI prints as one line on stderr, without a traceback."""

    status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, status: ExitStatus | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class UsageError(RlmError):
    status = ExitStatus.USAGE


class WorkspaceError(RlmError):
    """The workspace is missing, locked or damaged."""


class ExtractError(RlmError):
    """One input could not be turned into text; the message names what is wrong."""


class BinaryFile(ExtractError):
    """An input that is not a document at all (an executable, an image with no text): one found
    by walking a folder is skipped quietly and counted, one named on the command line fails."""


class Interrupted(RlmError):
    """Ctrl-C, with what was kept (the CLI prints it as `rlm: interrupted: ...`)."""

    status = ExitStatus.INTERRUPTED


_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@?#'\"]+@")
_SECRET_PARAM = re.compile(r"([?&;](?:[\w.-]*(?:key|token|secret|password|passwd|pwd|auth|sig|signature|"
                           r"credential|session)[\w.-]*)=)[^&;#\s'\"]+", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the credentials of any URL in it masked: `https://user:pass@host` becomes
    `https://***@host`, and `?key=...` (api_key, token, sig, password...) becomes `?key=***`.
    Every message that can echo an --api-base goes through this one function."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))
