"""The worker runtime: ``Worker(tasks, settings, WorkerConfig(...))`` with ``await run()`` / ``stop()``.

Execution is at-least-once: a worker can die mid-job and the job runs again (a new attempt).
A transactional task (``@app.task(transactional=True)``, async) receives ``conn=``, an
``AsyncConnection`` inside a transaction; the job's success is written in that same transaction,
fenced, so its database side effects happen exactly once; an exception rolls everything back and
the failure is recorded as usual.
"""

from __future__ import annotations

from pgsched.worker.config import WorkerConfig
from pgsched.worker.runtime import CANCEL_CHANNEL, JOBS_CHANNEL, Worker

__all__ = ["CANCEL_CHANNEL", "JOBS_CHANNEL", "Worker", "WorkerConfig"]
