"""ProgressWriter: collects the progress and heartbeat reports of running attempts and writes them in batches.

Service layer. ``report()`` may be called from any thread (sync tasks run in threads); reports of one
attempt merge (the latest progress wins; a heartbeat keeps the longest promise), so each job costs at most
one write per ``interval`` however often its task reports, and all reports of a flush are one statement,
fenced on (id, lease). A report whose fence fails belongs to an attempt the reaper took back (its own lease
ran out) or that already ended: ``on_lost`` is told, so the worker stops that attempt. On connection loss the
reports are kept and merged with newer ones for the next flush. When an attempt ends, the executor has its
last report written first (``settle``), so a finished job shows the progress it ended with.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable

from pgsched.errors import DatabaseUnavailable
from pgsched.worker_store import Report, WorkerStore

__all__ = ["ProgressWriter"]

log = logging.getLogger(__name__)


class ProgressWriter:
    def __init__(
        self,
        store: WorkerStore,
        *,
        lease_seconds: float,
        interval: float = 1.0,
        on_lost: Callable[[int, int], None] | None = None,
    ) -> None:
        self._store = store
        self._lease_seconds = lease_seconds
        self._interval = interval
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, int], Report] = {}

    def report(
        self,
        job_id: int,
        lease: int,
        *,
        fraction: float | None = None,
        message: str | None = None,
        beat: bool = False,
        extend: float | None = None,
    ) -> None:
        """Keep a report for the next flush (thread-safe); see ``JobContext.progress`` / ``heartbeat``."""
        key = (job_id, lease)
        seconds = (extend or self._lease_seconds) if beat else None
        with self._lock:
            self._pending[key] = _merged(self._pending.get(key), Report(job_id, lease, fraction, message, seconds))

    def holds(self, job_id: int, lease: int) -> bool:
        """Whether an attempt has a report not yet written (read without the lock: a dict look-up is atomic)."""
        return (job_id, lease) in self._pending

    async def settle(self, job_id: int, lease: int) -> None:
        """The attempt ended: write its unwritten report now, before its end (which drops the lease) is written."""
        key = (job_id, lease)
        if key not in self._pending:  # the usual case
            return
        with self._lock:
            report = self._pending.pop(key, None)
        if report is not None:
            with contextlib.suppress(DatabaseUnavailable):
                await self._store.job_progress_many([dataclasses.replace(report, extend=None)])

    async def run(self) -> None:
        """Flush every ``interval`` until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            accepted = await self._store.job_progress_many(list(batch.values()))
        except DatabaseUnavailable as exc:
            log.warning("progress not written", extra={"event": "progress_retry", "error": str(exc)})
            with self._lock:
                for key, older in batch.items():
                    self._pending[key] = _merged(older, self._pending.get(key))
            return
        for job_id, lease in batch:
            if job_id not in accepted and self._on_lost is not None:
                self._on_lost(job_id, lease)


def _merged(older: Report | None, newer: Report | None) -> Report:
    """One report standing for both: the newer progress if any, the longer lease extension if any."""
    if older is None or newer is None:
        report = newer or older
        assert report is not None
        return report
    progress = newer if newer.fraction is not None else older
    extends = [e for e in (older.extend, newer.extend) if e is not None]
    return dataclasses.replace(
        newer, fraction=progress.fraction, message=progress.message, extend=max(extends) if extends else None
    )
