"""``pgsched.shell``: run a command as a job. Off unless the worker allows commands (``--allow-shell``).

Arguments: ``argv`` (a list; no shell) or ``command`` with ``shell: true`` (``/bin/sh -c``), and
optionally ``cwd``, ``env`` (added to a minimal environment, bounded: see ``shell_policy``),
``timeout`` (seconds), ``max_output_bytes`` (at most the worker's cap) and ``check`` (default true:
a non-zero exit fails the attempt). The worker checks the command against its allowlist, then
starts it under a supervisor (``supervisor.py``), as ``PGSCHED_SHELL_USER`` when the worker is
root, in a new session, with no inherited file descriptors. The job ends when the command's main
process ends; at that moment, at a timeout and at a cancel its whole process tree is killed.
Output is read as it comes and capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgsched.builtins.guard import BadArgument, job_cap
from pgsched.builtins.shell_policy import ShellPolicy, job_environment
from pgsched.errors import PgschedError
from pgsched.tasks import Task

__all__ = ["SHELL_TASK", "ShellCommandFailed", "run_command", "shell_task"]

SHELL_TASK = "pgsched.shell"
SUPERVISOR = str(Path(__file__).with_name("supervisor.py"))
_CHUNK = 65536
_SUPERVISOR_GRACE = 5.0  # seconds the supervisor gets to kill the tree before it is killed itself
_PIPE_GRACE = 1.0  # seconds to read what is left in the pipes after the supervisor ended


class ShellCommandFailed(PgschedError):
    """The command exited with a non-zero status."""


def shell_task(policy: ShellPolicy) -> Task:
    async def shell(**kwargs: Any) -> dict[str, Any]:
        return await run_command(policy, **kwargs)

    return Task(name=SHELL_TASK, func=shell, queue="default")


def _argv(argv: Any, command: Any, shell: Any) -> list[str]:
    if shell:
        if not isinstance(command, str) or not command:
            raise BadArgument("command", "with shell: true, give the command line as a non-empty string")
        return ["/bin/sh", "-c", command]
    if command is not None:
        raise BadArgument("command", "a command line needs shell: true; without a shell give argv (a list)")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and "\x00" not in a for a in argv):
        raise BadArgument("argv", "must be a non-empty list of strings")
    return list(argv)


@dataclass
class _Capture:
    """The first ``cap`` bytes of one stream; the rest is drained so the command never blocks on a full pipe."""

    cap: int
    kept: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        while stream is not None and (chunk := await stream.read(_CHUNK)):
            room = self.cap - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
            if len(chunk) > room:
                self.truncated = True

    def text(self) -> str:
        return self.kept.decode(errors="replace")


def _supervisor_options(policy: ShellPolicy, cwd: Any) -> list[str]:
    options = []
    if policy.run_as is not None:
        options += ["--uid", str(policy.run_as[0]), "--gid", str(policy.run_as[1])]
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd or "\x00" in cwd:
            raise BadArgument("cwd", "must be a directory path")
        options += ["--cwd", cwd]
    return options


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Close the control pipe (the supervisor kills the tree and exits); kill the supervisor if it lingers."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        async with asyncio.timeout(_SUPERVISOR_GRACE):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def run_command(
    policy: ShellPolicy,
    *,
    argv: Any = None,
    command: Any = None,
    shell: bool = False,
    cwd: Any = None,
    env: Any = None,
    timeout: Any = None,  # noqa: ASYNC109 - a job argument, read from the job's JSON
    max_output_bytes: Any = None,
    check: bool = True,
) -> dict[str, Any]:
    """Run one command; returns ``{returncode, stdout, stderr, stdout_truncated, stderr_truncated}``."""
    args = _argv(argv, command, shell)
    policy.check(args)
    cap = job_cap(max_output_bytes, policy.max_output_bytes, "max_output_bytes")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise BadArgument("timeout", "must be a positive number of seconds")
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-I", "-S", SUPERVISOR, *_supervisor_options(policy, cwd), "--", *args],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=job_environment(env),
        start_new_session=True,
    )
    out, err = _Capture(cap), _Capture(cap)
    readers = asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr))
    try:
        async with asyncio.timeout(timeout):
            returncode = await proc.wait()
    except TimeoutError:
        raise TimeoutError(f"command timed out after {timeout}s; its process tree was killed") from None
    finally:
        await _end(proc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(readers, _PIPE_GRACE)  # EOF at once unless something escaped the tree
    result: dict[str, Any] = {
        "returncode": returncode,
        "stdout": out.text(),
        "stderr": err.text(),
        "stdout_truncated": out.truncated,
        "stderr_truncated": err.truncated,
    }
    if check and returncode != 0:
        tail = result["stderr"][-500:].strip()
        raise ShellCommandFailed(f"command exited with status {returncode}" + (f": {tail}" if tail else ""))
    return result
