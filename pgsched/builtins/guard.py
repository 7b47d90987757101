"""What a built-in task refuses, and how: errors that end the job at once, and the job-cap rule.

Infra layer, pure: no OS, no network. A refusal is a ``PermanentError``: the job goes to the
dead-letter queue on its first attempt (retrying cannot make it allowed).
"""

from __future__ import annotations

from typing import Any

from pgsched.errors import PermanentError, ValidationError

__all__ = ["BadArgument", "TaskRefused", "job_cap"]


class TaskRefused(PermanentError, PermissionError):
    """The worker does not allow this (shell disabled, command or host not on its allowlist)."""


class BadArgument(PermanentError, ValidationError):
    """A job argument of a built-in task is invalid; ``field`` names it."""


def job_cap(requested: Any, server_cap: int, field: str) -> int:
    """The byte cap for one job: the server's, or less if the job asks for less (never more)."""
    if requested is None:
        return server_cap
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise BadArgument(field, "must be a positive number of bytes")
    if requested > server_cap:
        raise BadArgument(field, f"{requested} is over this worker's cap of {server_cap} bytes; ask for less or none")
    return requested
