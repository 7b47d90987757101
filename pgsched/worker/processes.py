"""ProcessPool: runs sync tasks declared ``executor="process"`` in child processes, one job per child at a time.

Service layer, no SQL. Not ``concurrent.futures.ProcessPoolExecutor``: a child that dies there breaks the whole
pool and fails every pending future, and a running call cannot be killed. Here each child has its own pipe,
so a child that dies (SIGKILL, segfault, ``os._exit``) or is killed for its memory fails only the attempt it
was running (kind ``crash`` / ``memory``), and a timeout or a cancel kills just that child. Children are
started with the ``spawn`` method (safe in a threaded process) when the worker starts (``warm``) or on
demand, and replaced on demand; a child is
retired after ``max_tasks_per_child`` jobs, or after a job that left it above ``max_memory_mb`` of resident
memory (checked every ``_WATCH`` seconds while a job runs: above the ceiling the child is killed at once).

The child imports the task's module and finds the function by its qualified name (a task defined at module
level, as ``pgsched worker --app`` needs anyway). Inside, ``current_job()`` works: its progress and heartbeat
reports travel back over the pipe to the worker's progress writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from pgsched.context import JobContext, Reporter, reset_current_job, set_current_job

__all__ = ["ChildCrashed", "ChildOverMemory", "ProcessPool"]

log = logging.getLogger(__name__)

_WATCH = 0.1
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ChildCrashed(Exception):
    """The process child running the attempt died."""

    pgsched_error_kind = "crash"


class ChildOverMemory(ChildCrashed):
    """The process child went over the memory ceiling and was killed."""

    pgsched_error_kind = "memory"


def _resident_bytes(pid: int) -> int | None:
    """Resident memory of a process (Linux /proc); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class _Child:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.done = 0

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    def reap(self) -> None:
        """Wait for the exit (it was asked to stop or killed) and free the pipe; blocking: call in a thread."""
        self.process.join(5)
        if self.process.is_alive():
            self.kill()
            self.process.join(5)
        with contextlib.suppress(OSError):
            self.conn.close()


class ProcessPool:
    """At most ``size`` children at once; ``await run(...)`` runs one call in an idle child."""

    def __init__(
        self, size: int, *, max_tasks_per_child: int | None = None, max_memory_mb: float | None = None
    ) -> None:
        self._size = size
        self._max_tasks = max_tasks_per_child
        self._max_bytes = None if max_memory_mb is None else int(max_memory_mb * 1024 * 1024)
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Child] = []
        self._slots = asyncio.Semaphore(size)
        self._all: set[_Child] = set()
        self._count = 0  # children started or starting, not yet retired
        self._closed = False
        self._reaping: set[asyncio.Task[None]] = set()

    @property
    def pids(self) -> list[int]:
        return sorted(child.pid for child in self._all)

    async def run(self, func: Any, args: dict[str, Any], context: JobContext, reporter: Reporter | None = None) -> Any:
        """Call ``func(**args)`` in a child; its exception is raised here (with the child's traceback as a note)."""
        async with self._slots:
            child = self._idle.pop() if self._idle else await self._start()
            keep = False
            try:
                child.conn.send((func.__module__, func.__qualname__, args, _portable_context(context)))
                reply = await self._wait(child, reporter)
                child.done += 1
                keep = not self._spent(child)
            finally:
                if keep:
                    self._idle.append(child)
                else:
                    self._retire(child)
        status, value, tb = reply
        if status == "ok":
            return value
        if tb:
            value.add_note(f"in process child {child.pid}:\n{tb}")
        raise value

    async def warm(self) -> None:
        """Start the children now (the worker serves a process task), so a first job's timeout does not pay
        for a child's start (about a second: a new interpreter imports the app)."""
        while self._count < self._size and not self._closed:
            async with self._slots:
                if self._count >= self._size or self._closed:
                    return
                child = await self._start()
                if self._closed:
                    self._retire(child)
                    return
                self._idle.append(child)

    async def close(self) -> None:
        """Stop every child (running ones are killed) and wait for them."""
        self._closed = True
        for child in list(self._all):
            self._retire(child, kill=child not in self._idle)
        self._idle.clear()
        if self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)

    async def _start(self) -> _Child:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_child_main, args=(theirs,), daemon=True, name="pgsched-child")
        self._count += 1
        try:
            await asyncio.to_thread(process.start)
        except BaseException:
            self._count -= 1
            raise
        theirs.close()
        child = _Child(process, ours)
        self._all.add(child)
        log.debug("process child started", extra={"event": "child_started", "pid": child.pid})
        return child

    def _spent(self, child: _Child) -> bool:
        if self._max_tasks is not None and child.done >= self._max_tasks:
            return True
        resident = _resident_bytes(child.pid) if self._max_bytes is not None else None
        return resident is not None and self._max_bytes is not None and resident > self._max_bytes

    def _retire(self, child: _Child, *, kill: bool = True) -> None:
        """Take the child out of the pool: killed (it may be mid-call), or asked to stop when idle."""
        if child in self._all:
            self._count -= 1
        self._all.discard(child)
        if kill:
            child.kill()
        else:
            with contextlib.suppress(OSError):
                child.conn.send(None)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(child.reap))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def _wait(self, child: _Child, reporter: Reporter | None) -> tuple[str, Any, str | None]:
        """The child's reply; reports on the way go to ``reporter``. Raises when it dies or outgrows the ceiling."""
        loop = asyncio.get_running_loop()
        fd = child.conn.fileno()
        while True:
            readable = asyncio.Event()
            loop.add_reader(fd, readable.set)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_WATCH):
                        await readable.wait()
            finally:
                loop.remove_reader(fd)
            while child.conn.poll():
                try:
                    message = child.conn.recv()
                except (EOFError, OSError):
                    break
                if message[0] == "report":
                    if reporter is not None:
                        _, job_id, lease, fields = message
                        reporter.report(job_id, lease, **fields)
                    continue
                return message  # type: ignore[no-any-return]
            self._check(child)

    def _check(self, child: _Child) -> None:
        if not child.process.is_alive():
            code = child.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            raise ChildCrashed(f"the process child {child.pid} running this job died ({how})")
        if self._max_bytes is None:
            return
        resident = _resident_bytes(child.pid)
        if resident is not None and resident > self._max_bytes:
            child.kill()
            raise ChildOverMemory(
                f"the process child {child.pid} used {resident / 2**20:.0f} MiB, over the ceiling of"
                f" {self._max_bytes / 2**20:.0f} MiB: killed"
            )


def _portable_context(context: JobContext) -> tuple[int, int, str, str, int | None, int]:
    return (context.id, context.attempt, context.queue, context.task, context.worker_id, context.lease)


# ---------------------------------------------------------------- in the child


class _PipeReporter:
    """The child's side of progress and heartbeat reports: sent to the worker over the pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.lock = threading.Lock()

    def report(self, job_id: int, lease: int, **fields: Any) -> None:
        with self.lock:
            self._conn.send(("report", job_id, lease, fields))


def _function(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return getattr(target, "func", target)  # the module holds the Task the decorator returned


def _child_main(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle (it stops or kills us)
    reporter = _PipeReporter(conn)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        module, qualname, args, (job_id, attempt, queue, task, worker_id, lease) = message
        token = set_current_job(JobContext(job_id, attempt, queue, task, worker_id, lease, reporter))
        try:
            reply: tuple[str, Any, str | None] = ("ok", _function(module, qualname)(**args), None)
        except Exception as exc:
            reply = ("error", exc, "".join(traceback.format_exception(exc)))
        finally:
            reset_current_job(token)
        with reporter.lock:  # one writer on the pipe at a time
            try:
                conn.send(reply)  # pickled whole before a byte is written
            except Exception as exc:
                conn.send(_unpicklable(reply, exc))


def _unpicklable(reply: tuple[str, Any, str | None], exc: Exception) -> tuple[str, Any, str | None]:
    """A plain error saying what could not cross the pipe."""
    status, value, tb = reply
    what = "result" if status == "ok" else f"exception {type(value).__name__}: {value}"
    return ("error", RuntimeError(f"the task's {what} cannot be sent back from its process: {exc}"), tb)
