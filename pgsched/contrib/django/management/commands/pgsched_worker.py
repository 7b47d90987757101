"""``manage.py pgsched_worker``: ``pgsched worker`` for ``settings.PGSCHED_APP`` on the Django database.

The DSN comes from ``DATABASES`` (see ``database_dsn``); the options are the CLI's, passed through.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.contrib.django import database_dsn

__all__ = ["Command"]


class Command(BaseCommand):  # type: ignore[misc]  # django ships no type hints
    help = "Run a pgsched worker for settings.PGSCHED_APP; options after -- are those of `pgsched worker`."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--queues", default="default", help="Comma-separated queues to claim from.")
        parser.add_argument("--concurrency", type=int, default=10, help="Jobs run at once.")
        parser.add_argument("--no-scheduler", action="store_true", help="Do not also run the leader candidate.")
        parser.add_argument("--log-format", choices=["text", "json"], default=None, help="Log line format.")
        parser.add_argument("worker_options", nargs=argparse.REMAINDER, help="More `pgsched worker` options.")

    def handle(self, *args: Any, **options: Any) -> None:
        ref = getattr(settings, "PGSCHED_APP", None)
        if not ref:
            raise CommandError('set PGSCHED_APP = "module:app" in the Django settings')
        argv = ["--dsn", database_dsn()]
        if options["log_format"]:
            argv += ["--log-format", options["log_format"]]
        argv += [
            "worker",
            "--app",
            str(ref),
            "--queues",
            options["queues"],
            "--concurrency",
            str(options["concurrency"]),
        ]
        if options["no_scheduler"]:
            argv.append("--no-scheduler")
        argv += [o for o in options["worker_options"] if o != "--"]
        code = run_cli(cli, argv)
        if code:
            raise CommandError(f"pgsched worker exited with code {code}", returncode=code)
