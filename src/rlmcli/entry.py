"""The `rlm` console script. Kept tiny: for commands that may ingest, the token-counting helper is
forked before the CLI's own imports, so its 0.2 s of set-up overlaps everything else."""

from __future__ import annotations

import sys

def _may_ingest(argv: list[str]) -> bool:
    """`rlm ingest ...`, or `rlm ask FILE... Q` (with -w, ask usually has nothing to ingest)."""
    if not argv or "--help" in argv or "-h" in argv:
        return False
    if argv[0] == "ingest":
        return True
    return argv[0] == "ask" and not any(a in ("-w", "--workspace") or a.startswith("--workspace=") for a in argv)


def main() -> None:
    if _may_ingest(sys.argv[1:]):
        from rlmcli.tokens import start_early

        start_early()
    from rlmcli.cli import main as cli_main

    cli_main()
