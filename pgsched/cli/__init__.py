"""The ``pgsched`` command line. Interface layer: parses input, formats output, exits 0/1/2.

Subcommands live in sibling modules of this package and register on ``cli``.
"""

from __future__ import annotations

import sys

from pgsched.cli import admin as _admin  # noqa: F401  (registers commands)
from pgsched.cli import api as _api  # noqa: F401  (registers commands)
from pgsched.cli import bench as _bench  # noqa: F401  (registers commands)
from pgsched.cli import dev as _dev  # noqa: F401  (registers commands)
from pgsched.cli import doctor as _doctor  # noqa: F401  (registers commands)
from pgsched.cli import jobs as _jobs  # noqa: F401  (registers commands)
from pgsched.cli import migrate as _migrate  # noqa: F401  (registers commands)
from pgsched.cli import retention as _retention  # noqa: F401  (registers commands)
from pgsched.cli import scheduler as _scheduler  # noqa: F401  (registers commands)
from pgsched.cli import tokens as _tokens  # noqa: F401  (registers commands)
from pgsched.cli import worker as _worker  # noqa: F401  (registers commands)
from pgsched.cli import workflows as _workflows  # noqa: F401  (registers commands)
from pgsched.cli.base import cli, run_cli

__all__ = ["cli", "main"]


def main() -> None:
    sys.exit(run_cli(cli, sys.argv[1:]))
