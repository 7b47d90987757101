"""Built-in tasks, so SQL and REST users can schedule work without writing Python.

``pgsched.shell`` runs an allowlisted command (none unless the worker allows some) and
``pgsched.http`` calls an allowlisted ``host:port``. Infra layer: talks to the OS and the network,
never to PostgreSQL. The rules come from Settings and are enforced here, in the worker, whoever
enqueued the job (REST, Python or a plain SQL INSERT).
"""

from __future__ import annotations

import logging

from pgsched.builtins.guard import BadArgument, TaskRefused
from pgsched.builtins.http import HTTP_TASK, HttpPolicy, HttpStatusError, http_task
from pgsched.builtins.shell import SHELL_TASK, ShellCommandFailed, shell_task
from pgsched.builtins.shell_policy import ShellPolicy
from pgsched.builtins.supervisor import PR_SET_DUMPABLE, prctl
from pgsched.config import Settings
from pgsched.tasks import Task

__all__ = [
    "HTTP_TASK",
    "SHELL_TASK",
    "BadArgument",
    "HttpStatusError",
    "ShellCommandFailed",
    "TaskRefused",
    "builtin_tasks",
]

log = logging.getLogger(__name__)


def builtin_tasks(settings: Settings) -> dict[str, Task]:
    """The built-in tasks by name, configured for one worker.

    When shell commands are allowed, the process becomes non-dumpable first: a command running
    under the worker's own uid can then neither read ``/proc/<worker>/environ`` (the DSN, Redis
    URL, API token) nor ptrace the worker.
    """
    shell = ShellPolicy.from_settings(settings)
    if shell.enabled and not prctl(PR_SET_DUMPABLE, 0):
        log.warning("cannot make the worker non-dumpable", extra={"event": "shell_dumpable"})
    return {SHELL_TASK: shell_task(shell), HTTP_TASK: http_task(HttpPolicy.from_settings(settings))}
