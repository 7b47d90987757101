"""``python -m pgsched``: the same as the ``pgsched`` command."""

from __future__ import annotations

from pgsched.cli import main

main()
