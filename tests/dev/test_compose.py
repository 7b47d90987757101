"""docker-compose.yml parses, and every service's pgsched command is a real command with valid options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from pgsched.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_documented_services_with_health_checks() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "scheduler", "worker"} <= set(services)
    for name in ("postgres", "redis", "api", "worker"):
        assert "healthcheck" in services[name], name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "ports" not in services["worker"], "workers scale with --scale worker=N, so they publish no fixed port"


@pytest.mark.parametrize("service", ["migrate", "api", "scheduler", "worker"])
def test_each_service_command_is_a_valid_pgsched_invocation(service: str) -> None:
    argv = list(compose()["services"][service]["command"])
    with click.Context(cli) as root:
        name, command, rest = cli.resolve_command(root, argv)
        assert command is not None, f"{service}: unknown command {argv[0]!r}"
        # make_context parses and validates every option without running the command.
        command.make_context(name or argv[0], rest, parent=root)


def test_the_dockerfile_installs_the_package_with_sql_and_migrations() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for needed in ("COPY sql ./sql", "COPY migrations ./migrations", "pip install", 'ENTRYPOINT ["pgsched"]'):
        assert needed in text
