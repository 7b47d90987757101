"""What ``pgsched.shell`` may run on this worker: the command allowlist, the job environment, the user.

Infra layer, built once from Settings at worker start; nothing here spawns a process. Allowlist
entries are shell-quoted argv patterns, one ``fnmatch`` pattern per argument (sudoers-like): a
program alone (``echo``, ``/usr/bin/*``) allows it with any arguments; a program with arguments
(``pg_dump -Fc *``) allows exactly that many, each matching its pattern; a last ``...`` allows any
further arguments. ``shell: true`` jobs are checked as ``/bin/sh -c COMMAND``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import pwd
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pgsched.builtins.guard import BadArgument, TaskRefused
from pgsched.config import Settings, output_cap
from pgsched.errors import ConfigurationError

__all__ = ["BASE_ENV", "CommandAllowlist", "ShellPolicy", "job_environment"]

log = logging.getLogger(__name__)

BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/"}
MAX_ENV_VARS = 32
MAX_ENV_VALUE_BYTES = 4096
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
# Names a job may not set: they choose the program or load code into an allowed one.
_ENV_RESERVED = frozenset(
    {"PATH", "HOME", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "CDPATH", "GLOBIGNORE"}
    | {"PROMPT_COMMAND", "NODE_OPTIONS", "RUBYOPT", "RUBYLIB", "PERL5OPT", "PERL5LIB", "PERLLIB"}
    | {"JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES"}
)
_ENV_RESERVED_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_", "PYTHON", "GIT_", "PGSCHED_")


@dataclass(frozen=True, slots=True)
class CommandAllowlist:
    """Parsed ``PGSCHED_SHELL_ALLOW`` / ``--allow-shell`` entries; empty allows nothing."""

    entries: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> CommandAllowlist:
        parsed = []
        for entry in entries:
            try:
                tokens = tuple(shlex.split(entry))
            except ValueError as exc:
                raise ConfigurationError(f"shell allowlist entry {entry!r}: {exc}") from None
            if tokens and tokens[0] != "...":
                parsed.append(tokens)
            elif tokens:
                raise ConfigurationError(f"shell allowlist entry {entry!r} must start with a program")
        return cls(tuple(parsed))

    def allows(self, argv: Sequence[str]) -> bool:
        return any(_matches(entry, argv) for entry in self.entries)


def _matches(entry: tuple[str, ...], argv: Sequence[str]) -> bool:
    open_ended = len(entry) == 1 or entry[-1] == "..."
    patterns = entry[:-1] if entry[-1] == "..." else entry
    if len(argv) < len(patterns) or (not open_ended and len(argv) != len(patterns)):
        return False
    return all(fnmatch.fnmatchcase(arg, pattern) for arg, pattern in zip(argv, patterns, strict=False))


def job_environment(env: Any) -> dict[str, str]:
    """The command's whole environment: PATH, LANG, HOME=/ plus the job's bounded ``env``."""
    if env is None:
        return dict(BASE_ENV)
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise BadArgument("env", "must be an object of string values")
    if len(env) > MAX_ENV_VARS:
        raise BadArgument("env", f"at most {MAX_ENV_VARS} variables")
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise BadArgument("env", f"{name!r} is not a variable name")
        if name in _ENV_RESERVED or name.startswith(_ENV_RESERVED_PREFIXES):
            raise BadArgument("env", f"{name} may not be set by a job")
        if "\x00" in value or len(value.encode()) > MAX_ENV_VALUE_BYTES:
            raise BadArgument("env", f"{name}: at most {MAX_ENV_VALUE_BYTES} bytes, no NUL")
    return {**BASE_ENV, **env}


@dataclass(frozen=True, slots=True)
class ShellPolicy:
    """One worker's shell rules. ``run_as`` is (uid, gid) when the worker is root, else None."""

    allowlist: CommandAllowlist
    run_as: tuple[int, int] | None
    max_output_bytes: int

    @property
    def enabled(self) -> bool:
        return bool(self.allowlist.entries)

    @classmethod
    def from_settings(cls, settings: Settings) -> ShellPolicy:
        allowlist = CommandAllowlist.parse(settings.shell_allow)
        cap = output_cap("PGSCHED_SHELL_MAX_OUTPUT_BYTES", settings.shell_max_output_bytes)
        run_as = _account(settings.shell_user) if allowlist.entries and os.geteuid() == 0 else None
        if run_as is not None and run_as[0] == 0:
            log.warning("shell jobs run as root", extra={"event": "shell_runs_as_root"})
        return cls(allowlist, run_as, cap)

    def check(self, argv: Sequence[str]) -> None:
        if not self.enabled:
            raise TaskRefused(
                "the pgsched.shell task is disabled on this worker: allow commands with --allow-shell PATTERN"
                " (or PGSCHED_SHELL_ALLOW)"
            )
        if not self.allowlist.allows(argv):
            raise TaskRefused(f"command {shlex.join(argv)[:300]!r} is not in this worker's shell allowlist")


def _account(user: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ConfigurationError(f"PGSCHED_SHELL_USER: no user {user!r} on this host") from None
    return entry.pw_uid, entry.pw_gid
