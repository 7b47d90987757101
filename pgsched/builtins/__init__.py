"""Built-in tasks, so SQL and REST users can schedule work without writing Python.

``pgsched.shell`` runs a command (disabled unless the worker allows it) and ``pgsched.http`` calls
a URL on an allowlisted host. Infra layer: talks to the OS and the network, never to PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgsched.builtins.http import HTTP_TASK, HttpStatusError, http_task
from pgsched.builtins.shell import SHELL_TASK, ShellCommandFailed, shell_task
from pgsched.tasks import Task

__all__ = ["HTTP_TASK", "SHELL_TASK", "HttpStatusError", "ShellCommandFailed", "builtin_tasks"]


def builtin_tasks(*, allow_shell: bool = False, http_allowlist: Sequence[str] = ()) -> dict[str, Task]:
    """The built-in tasks by name, configured for one worker."""
    return {
        SHELL_TASK: shell_task(allowed=allow_shell),
        HTTP_TASK: http_task(allowlist=http_allowlist),
    }
