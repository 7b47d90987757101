"""The shell task's supervisor: runs one command, and kills every process it left when it ends.

Run as a script by the worker (``python -I -S supervisor.py [--uid N --gid N] [--cwd DIR] -- ARGV``),
so it imports nothing from pgsched and starts fast. On Linux it makes itself a child subreaper
(``PR_SET_CHILD_SUBREAPER``): every descendant of the command, ``setsid`` and double-fork escapes
included, stays below it, is found through /proc and is killed. It ends when the command's main
process ends (after killing the rest) and exits as the command did, or at once (after the same
kill) when its stdin, the worker's control pipe, closes: the job's timeout, a cancel, the worker's
death. Without prctl and /proc (not Linux) only the command's process group is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import threading
from typing import NoReturn

__all__ = ["PR_SET_DUMPABLE", "descendants", "main", "prctl"]

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
CONTROL_CLOSED = 137  # the exit status when the worker ended the job (128 + SIGKILL, as for a killed job)


def prctl(option: int, value: int) -> bool:
    """``prctl(option, value)`` through libc; False where it does not exist or fails."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, their children, ...), read from /proc; [] without /proc."""
    tree = _parents()
    found: list[int] = []
    todo = [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_all(group: int) -> None:
    """SIGKILL the command's group and every descendant; return once no child of ours is left."""
    with contextlib.suppress(OSError):
        os.killpg(group, signal.SIGKILL)
    while True:
        for pid in descendants(os.getpid()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)  # orphans were re-parented to us (subreaper): reap them all
        except ChildProcessError:
            return


def _watch_control(group: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    kill_all(group)
    os._exit(CONTROL_CLOSED)


def _exit_like(returncode: int) -> NoReturn:
    if returncode < 0:  # killed by a signal: die of the same one (without a core file)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-returncode, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), -returncode)
        os._exit(128 - returncode)
    os._exit(returncode)


def _options(args: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    while args and args[0] != "--":
        options[args[0].lstrip("-")] = args[1]
        args = args[2:]
    return options, args[1:]


def main(args: list[str]) -> NoReturn:
    options, argv = _options(args)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_DUMPABLE, 0)  # a same-uid command cannot ptrace its supervisor
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # nor gain privileges through setuid programs (sudo, su)
    uid = int(options["uid"]) if "uid" in options else None
    cwd = options.get("cwd")
    try:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=uid,
            group=int(options["gid"]) if "gid" in options else None,
            extra_groups=[] if uid is not None else None,
            # After the user change (Popen's cwd= runs before it): the command's user must be
            # able to reach its directory itself, not through a root-only parent.
            preexec_fn=None if cwd is None else lambda: os.chdir(cwd),  # noqa: PLW1509 - single-threaded here
        )
    except (OSError, subprocess.SubprocessError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"cannot enter {cwd!r}"
        sys.stderr.write(f"pgsched: cannot run {argv[0]!r}: {reason or exc}\n")
        sys.stderr.flush()
        os._exit(126 if isinstance(exc, PermissionError) else 127)
    threading.Thread(target=_watch_control, args=(child.pid,), daemon=True).start()
    returncode = child.wait()
    kill_all(child.pid)
    _exit_like(returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
