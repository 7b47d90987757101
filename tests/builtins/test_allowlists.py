"""The built-in tasks' allowlists as parsed from settings: shell argv patterns and http host:port entries."""

from __future__ import annotations

import pytest

from pgsched.builtins.http import HostAllowlist
from pgsched.builtins.shell_policy import CommandAllowlist
from pgsched.config import Settings
from pgsched.errors import ConfigurationError


@pytest.mark.parametrize(
    ("entry", "argv", "allowed"),
    [
        ("echo", ["echo"], True),
        ("echo", ["echo", "a", "b"], True),
        ("echo", ["/bin/echo"], False),
        ("/usr/bin/*", ["/usr/bin/env", "x"], True),
        ("date +%s", ["date", "+%s"], True),
        ("date +%s", ["date", "+%s", "-s", "2000-01-01"], False),
        ("date +%s", ["date"], False),
        ("git -C /srv/repo ...", ["git", "-C", "/srv/repo", "pull", "--ff-only"], True),
        ("git -C /srv/repo ...", ["git", "-C", "/srv/other", "pull"], False),
        ("/bin/sh -c 'backup *'", ["/bin/sh", "-c", "backup nightly"], True),
        ("/bin/sh -c 'backup *'", ["/bin/sh", "-c", "rm -rf /"], False),
    ],
)
def test_a_shell_entry_allows_its_program_with_the_arguments_it_names(
    entry: str, argv: list[str], allowed: bool
) -> None:
    assert CommandAllowlist.parse([entry]).allows(argv) is allowed


def test_no_shell_entry_allows_nothing_and_a_bad_entry_stops_the_worker() -> None:
    assert not CommandAllowlist.parse([]).allows(["true"])
    with pytest.raises(ConfigurationError, match="No closing quotation"):
        CommandAllowlist.parse(["sh -c 'oops"])


@pytest.mark.parametrize(
    ("scheme", "host", "port", "allowed"),
    [
        ("https", "api.example.com", 443, True),
        ("https", "api.example.com", 8443, False),
        ("http", "api.example.com", 80, True),
        ("http", "hooks.example.com", 9000, True),
        ("http", "hooks.example.com", 80, False),
        ("https", "a.b.internal.test", 443, True),
        ("https", "internal.test", 443, False),
        ("http", "::1", 8080, True),
        ("http", "::1", 80, False),
    ],
)
def test_an_http_entry_without_a_port_allows_only_the_default_port_of_the_scheme(
    scheme: str, host: str, port: int, allowed: bool
) -> None:
    allowlist = HostAllowlist.parse(["API.example.com", "hooks.example.com:9000", "*.internal.test", "[::1]:8080"])
    assert allowlist.allows(scheme, host, port) is allowed


@pytest.mark.parametrize("entry", ["host:", "host:99999", "host:http", "[::1]8080", ":80"])
def test_a_malformed_http_entry_stops_the_worker(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="HTTP allowlist entry"):
        HostAllowlist.parse([entry])


def test_settings_read_the_allowlists_and_refuse_a_cap_over_the_hard_maximum() -> None:
    settings = Settings.from_env(
        {"PGSCHED_SHELL_ALLOW": "echo\ndate +%s\n", "PGSCHED_HTTP_ALLOW": "a.test, b.test:8080"}
    )
    assert (settings.shell_allow, settings.http_allow) == (("echo", "date +%s"), ("a.test", "b.test:8080"))
    with pytest.raises(ConfigurationError, match="PGSCHED_HTTP_MAX_RESPONSE_BYTES must be from 1 to 8388608"):
        Settings.from_env({"PGSCHED_HTTP_MAX_RESPONSE_BYTES": str(150 * 1024 * 1024)})
