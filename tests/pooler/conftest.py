"""Pooler test kit: the real-process fixtures of the worker and scheduler kits, shared."""

from __future__ import annotations

from tests.scheduler.conftest import spawn_scheduler  # noqa: F401 - the real-scheduler fixture, shared
from tests.worker.conftest import spawn_worker  # noqa: F401 - the real-worker fixture, shared
