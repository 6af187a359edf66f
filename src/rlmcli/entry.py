"""The `rlm` console script. Kept tiny: for commands that may ingest, the token-counting helper is
forked before the CLI's own imports, so its 0.2 s of set-up overlaps everything else."""

from __future__ import annotations

import sys

EARLY_TOKENIZER = {"ingest", "ask"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in EARLY_TOKENIZER and "--help" not in sys.argv and "-h" not in sys.argv:
        from rlmcli.tokens import start_early

        start_early()
    from rlmcli.cli import main as cli_main

    cli_main()
