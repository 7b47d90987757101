"""The ``pgsched`` command line. Interface layer: parses input, formats output, exits 0/1/2.

Subcommands live in sibling modules of this package and register on ``cli`` when first used
(``pgsched.cli.base.COMMAND_MODULES``).
"""

from __future__ import annotations

import sys

from pgsched.cli.base import cli, run_cli

__all__ = ["cli", "main"]


def main() -> None:
    sys.exit(run_cli(cli, sys.argv[1:]))
