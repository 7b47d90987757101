"""The root command group imports a subcommand's module only when that command runs (pgsched.cli.base.COMMAND_MODULES).

A cold ``pgsched worker`` then loads neither the REST API, the dashboard, the bench nor httpx, which every worker
process started cold paid for (about 0.14 s of CPU each on the 2-core test machine).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pgsched.cli
from pgsched.cli.base import COMMAND_MODULES, cli


def test_the_map_names_every_registered_command_and_its_module() -> None:
    for info in pkgutil.iter_modules(pgsched.cli.__path__):
        importlib.import_module(f"pgsched.cli.{info.name}")
    registered = {
        name: sys.modules[cmd.callback.__module__].__name__ for name, cmd in cli.commands.items() if cmd.callback
    }
    assert registered == {name: f"pgsched.cli.{module}" for name, module in COMMAND_MODULES.items()}


def test_a_worker_process_does_not_load_the_api_the_dashboard_or_httpx() -> None:
    probe = (
        "import json, sys\n"
        "from pgsched.cli.base import cli\n"
        "import click\n"
        "assert cli.get_command(click.Context(cli), 'worker') is not None\n"
        "heavy = ('pgsched.api', 'pgsched.cli.', 'httpx', 'starlette')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert loaded == ["pgsched.cli.base", "pgsched.cli.preflight", "pgsched.cli.worker"]


def test_help_still_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "pgsched", "--help"], capture_output=True, text=True, check=True).stdout
    for name in COMMAND_MODULES:
        assert f"  {name} " in out
