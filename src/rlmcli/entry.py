"""The `rlm` console script. Kept tiny: for commands that may ingest, the token-counting helper is
forked before the CLI's own imports, so its 0.2 s of set-up overlaps everything else."""

from __future__ import annotations

import os
import sys


def _may_ingest(argv: list[str]) -> bool:
    """`rlm ingest ...`, or `rlm ask FILE... Q` (with -w, ask usually has nothing to ingest)."""
    if not argv or "--help" in argv or "-h" in argv:
        return False
    if argv[0] == "ingest":
        return True
    return argv[0] == "ask" and not any(a in ("-w", "--workspace") or a.startswith("--workspace=") for a in argv)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def main() -> None:
    try:
        if _may_ingest(sys.argv[1:]):
            from rlmcli.tokens import start_early

            start_early()
        from rlmcli.cli import main as cli_main

        cli_main()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:  # outside a command's own handler (during imports, say): no traceback
        sys.stderr.write("rlm: interrupted: while starting up or shutting down, with no command work in progress\n")
        code = 130
    # The command is complete and its files are closed: skip the interpreter's teardown of every
    # imported module (20-30 ms, a tenth of a small ingest). Not while a non-daemon thread still
    # runs, since a normal exit would wait for it.
    threading = sys.modules.get("threading")  # not imported: no other thread to wait for
    if threading and any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `rlm ls | head -1`: the reader left, which is not an error
        pass
    os._exit(code)
