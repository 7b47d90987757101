"""The one lifecycle of every long-running part (worker, scheduler, API server): ``run()`` until ``stop()``,
and ``run_services``, which runs several in one process with shared signal handling.

A leaf module: asyncio, signals and pgsched.errors only; it knows no service by name.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Protocol

from pgsched.errors import PgschedError

__all__ = ["Service", "run_services", "traceback_logged"]

log = logging.getLogger(__name__)

_LOGGED = "_pgsched_traceback_logged"  # set on an error whose traceback a service's log holds


class Service(Protocol):
    """A long-running part of a process: ``run()`` until ``stop()``; a second ``stop()`` hurries it."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


async def run_services(services: Sequence[Service], *, grace: float | None = None) -> None:
    """Run every service until all have stopped; SIGTERM/SIGINT call ``stop()`` on each.

    With ``grace``, the first signal also tells the person at the terminal what shutdown waits for.
    """
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        log.info("signal received", extra={"event": "signal", "signal": signal.Signals(signum).name})
        # Log lines, not bare echoes: with --log-format json every stderr line must stay one JSON object.
        if grace is not None and signals_seen == 1:
            message = f"stopping: running jobs get up to {grace:g} s to finish (Ctrl-C again stops them now)"
            log.warning(message, extra={"event": "shutdown_grace", "grace": grace})
        elif grace is not None and signals_seen == 2:
            log.warning("stopping now: unfinished jobs go back to their queue", extra={"event": "shutdown_now"})
        for service in services:
            service.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with asyncio.TaskGroup() as group:
            for service in services:
                group.create_task(_run(service))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _run(service: Service) -> None:
    """Run one service; an error it did not expect (a bug, not a ``PgschedError`` with its own message) is logged
    with its traceback before it stops the process, so a service that died says where, whatever the log level."""
    try:
        await service.run()
    except PgschedError:
        raise
    except Exception as exc:
        log.exception("%s failed: the process stops", type(service).__name__, extra={"event": "service_failed"})
        setattr(exc, _LOGGED, True)
        raise


def traceback_logged(exc: BaseException) -> bool:
    """Whether a service's log already holds this error's traceback (so the CLI does not print it a second time)."""
    return bool(getattr(exc, _LOGGED, False))
