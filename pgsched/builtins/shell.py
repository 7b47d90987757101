"""``pgsched.shell``: run a command as a job. Disabled unless the worker runs with ``--allow-shell``.

Arguments: ``argv`` (a list; no shell) or ``command`` with ``shell: true`` (``/bin/sh -c``), and
optionally ``cwd``, ``env`` (added to a minimal environment), ``timeout`` (seconds),
``max_output_bytes`` and ``check`` (default true: a non-zero exit fails the attempt). The command
runs in its own process group; a timeout or a cancel kills the whole group, and so does the end
of the command (no stray children outlive the job). Output is captured and capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from pgsched.errors import PgschedError, ValidationError
from pgsched.tasks import Task

__all__ = ["SHELL_TASK", "ShellCommandFailed", "run_command", "shell_task"]

SHELL_TASK = "pgsched.shell"
DEFAULT_MAX_OUTPUT = 64 * 1024
_BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_CHUNK = 65536


class ShellCommandFailed(PgschedError):
    """The command exited with a non-zero status."""


def shell_task(*, allowed: bool) -> Task:
    async def shell(**kwargs: Any) -> dict[str, Any]:
        if not allowed:
            raise PermissionError(f"the {SHELL_TASK} task is disabled: start the worker with --allow-shell")
        return await run_command(**kwargs)

    return Task(name=SHELL_TASK, func=shell, queue="default")


def _argv(argv: Any, command: Any, shell: Any) -> list[str]:
    if shell:
        if not isinstance(command, str) or not command:
            raise ValidationError("command", "with shell: true, give the command line as a non-empty string")
        return ["/bin/sh", "-c", command]
    if command is not None:
        raise ValidationError("command", "a command line needs shell: true; without a shell give argv (a list)")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValidationError("argv", "must be a non-empty list of strings")
    return list(argv)


def _environment(env: Any) -> dict[str, str]:
    if env is None:
        return dict(_BASE_ENV)
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValidationError("env", "must be an object of string values")
    return {**_BASE_ENV, **env}


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, bool]:
    """Keep the first ``cap`` bytes, drain the rest (so the child never blocks on a full pipe)."""
    if stream is None:
        return b"", False
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(_CHUNK):
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            truncated = True
    return bytes(kept), truncated


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run_command(
    *,
    argv: Any = None,
    command: Any = None,
    shell: bool = False,
    cwd: str | None = None,
    env: Any = None,
    timeout: float | None = None,  # noqa: ASYNC109 - a job argument, read from the job's JSON
    max_output_bytes: int = DEFAULT_MAX_OUTPUT,
    check: bool = True,
) -> dict[str, Any]:
    """Run one command; returns ``{returncode, stdout, stderr, stdout_truncated, stderr_truncated}``."""
    args = _argv(argv, command, shell)
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise ValidationError("timeout", "must be a positive number of seconds")
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=_environment(env),
        start_new_session=True,
    )
    readers = asyncio.gather(_read_capped(proc.stdout, max_output_bytes), _read_capped(proc.stderr, max_output_bytes))
    try:
        async with asyncio.timeout(timeout):
            returncode = await proc.wait()
    except TimeoutError:
        raise TimeoutError(f"command timed out after {timeout}s; its process group was killed") from None
    finally:
        _kill_group(proc.pid)  # on timeout or cancel, and any child left behind by a finished command
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()
        (out, out_cut), (err, err_cut) = await readers
    result: dict[str, Any] = {
        "returncode": returncode,
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace"),
        "stdout_truncated": out_cut,
        "stderr_truncated": err_cut,
    }
    if check and returncode != 0:
        tail = result["stderr"][-500:].strip()
        raise ShellCommandFailed(f"command exited with status {returncode}" + (f": {tail}" if tail else ""))
    return result
