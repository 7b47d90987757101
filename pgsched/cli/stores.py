"""The stores a CLI command uses, over one short-lived async pool (``application_name`` pgsched:cli)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pgsched import db
from pgsched.admin_store import AdminStore
from pgsched.cli.preflight import require_schema
from pgsched.config import Settings
from pgsched.operator_store import OperatorStore
from pgsched.retention_store import RetentionStore
from pgsched.store import AsyncJobStore
from pgsched.token_store import TokenStore
from pgsched.workflow_store import AsyncWorkflowStore

__all__ = ["CliStores", "with_stores"]

T = TypeVar("T")


@dataclass(frozen=True)
class CliStores:
    jobs: AsyncJobStore
    operator: OperatorStore
    admin: AdminStore
    tokens: TokenStore
    workflows: AsyncWorkflowStore
    retention: RetentionStore


def with_stores(settings: Settings, action: Callable[[CliStores], Awaitable[T]]) -> T:
    """Open a pool, run ``action`` with the stores, close the pool."""

    dsn = settings.require_dsn()
    require_schema(dsn)

    async def go() -> T:
        pool = db.async_pool(dsn, "cli", min_size=1, max_size=2)
        await pool.open()
        try:
            return await action(
                CliStores(
                    AsyncJobStore(pool),
                    OperatorStore(pool),
                    AdminStore(pool),
                    TokenStore(pool),
                    AsyncWorkflowStore(pool),
                    RetentionStore(pool),
                )
            )
        finally:
            await pool.close()

    return asyncio.run(go())
