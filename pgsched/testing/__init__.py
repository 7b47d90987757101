"""Testing aids for applications built on pgsched: ``drain``, ``eager`` and a pytest plugin.

``drain(app)`` runs every due job through a real in-process worker against the real database;
``eager(app)`` runs tasks inline at enqueue, bypassing the queue (unit tests without a database).
The pytest plugin (loaded automatically) gives fixtures for a migrated throwaway database.
"""

from __future__ import annotations

from pgsched.testing.drain import drain, drain_async
from pgsched.testing.eager import EagerClient, eager
from pgsched.testing.outcome import Outcome

__all__ = ["EagerClient", "Outcome", "drain", "drain_async", "eager"]
