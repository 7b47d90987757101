"""Enqueuer threads for the PostgreSQL outage scenarios: the Python client under a server that goes away.

``ApiEnqueuers`` do the same through ``POST /jobs`` of a running API. An id counts as acknowledged once
``enqueue`` (or the API's 201) returned it; with ``acks`` each one is also appended
to that file, a ledger outside PostgreSQL (a crash of the server cannot take it back).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import httpx

from pgsched import DatabaseUnavailable, Pgsched, Settings

logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # every failed reconnect during an outage warns

__all__ = ["ApiEnqueuers", "Enqueuers", "read_acks"]


class Enqueuers:
    """``n`` threads enqueuing ``task`` jobs with ``args``, ``pause`` seconds apart, until ``stop()``."""

    def __init__(
        self,
        dsn: str,
        n: int,
        *,
        task: str = "tx",
        args: dict[str, Any] | None = None,
        pause: float = 0.01,
        acks: Path | None = None,
    ) -> None:
        self.app = Pgsched(settings=Settings(dsn=dsn))
        self.acked: list[int] = []
        self.failures = 0
        self.surprises: list[BaseException] = []
        self._task, self._args, self._pause = task, args or {}, pause
        self._acks = acks.open("a", buffering=1) if acks is not None else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(n)]
        for t in self._threads:
            t.start()

    def _submit(self) -> int:
        return self.app.enqueue(self._task, self._args)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._ack(self._submit())
            except DatabaseUnavailable:
                self.failures += 1
                self._stop.wait(0.05)
            except BaseException as exc:  # anything else is a product bug: keep it for the assertion
                self.surprises.append(exc)
                self._stop.wait(0.05)
            self._stop.wait(self._pause)

    def _ack(self, job_id: int) -> None:
        with self._lock:
            self.acked.append(job_id)
            if self._acks is not None:
                self._acks.write(f"{job_id}\n")

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        self.app.close()
        if self._acks is not None:
            self._acks.close()


class ApiEnqueuers(Enqueuers):
    """The same through a running ``pgsched api`` at ``url`` (``POST /jobs`` with ``token``); jobs are tagged
    ``api``. A 503 is the database unavailable; any other answer but 201 is a surprise."""

    def __init__(self, url: str, token: str, n: int, **options: Any) -> None:
        self._http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        super().__init__("", n, **options)

    def _submit(self) -> int:
        answer = self._http.post("/jobs", json={"task": self._task, "args": self._args, "tags": ["api"]})
        if answer.status_code == 503:
            raise DatabaseUnavailable(answer.text)
        if answer.status_code != 201:
            raise AssertionError(f"POST /jobs answered {answer.status_code}: {answer.text}")
        return int(answer.json()["id"])

    def stop(self) -> None:
        super().stop()
        self._http.close()


def read_acks(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]
