"""Registry test kit: the worker fixtures (in-process and real processes), shared."""

from __future__ import annotations

from tests.worker.conftest import spawn_worker, start_worker  # noqa: F401 - fixtures, shared
