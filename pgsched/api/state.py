"""What every request handler reaches: settings, the API's connection pool and the stores over it.

Interface layer wiring: builds the stores; opening and closing the pool is the app lifespan's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from pgsched import db
from pgsched.admin_store import AdminStore
from pgsched.api.replica import ReadRouter, ReadStores, replica_pool
from pgsched.api.throttle import AuthFailureLimiter
from pgsched.app import otel_tracer
from pgsched.client import dedupe_cache_for
from pgsched.clock import Clock, SystemClock
from pgsched.config import Settings
from pgsched.dedupe import DedupeCache
from pgsched.hooks import Tracer
from pgsched.operator_store import OperatorStore
from pgsched.retention_store import RetentionStore
from pgsched.schedule_store import ScheduleStore
from pgsched.store import AsyncJobStore
from pgsched.task_store import AsyncTaskStore
from pgsched.token_store import TokenStore
from pgsched.workflow_store import AsyncWorkflowStore

__all__ = ["ApiState", "api_pool", "api_state"]

POOL_TIMEOUT_SECONDS = 5.0


def api_pool(settings: Settings) -> AsyncConnectionPool:
    """An unopened pool whose connections carry the API's statement_timeout.

    min_size 0: connections are made on demand, so an outage at start-up or later heals by itself.
    """
    return db.async_pool(
        settings.require_dsn(),
        "api",
        min_size=0,
        max_size=8,
        statement_timeout=settings.api_statement_timeout_seconds,
        wait_timeout=POOL_TIMEOUT_SECONDS,
    )


@dataclass
class ApiState:
    settings: Settings
    clock: Clock
    pool: AsyncConnectionPool
    jobs: AsyncJobStore
    operator: OperatorStore
    admin: AdminStore
    tokens: TokenStore
    schedules: ScheduleStore
    workflows: AsyncWorkflowStore
    tasks: AsyncTaskStore
    retention: RetentionStore
    cache: DedupeCache
    auth_failures: AuthFailureLimiter
    reads: ReadRouter  # lists, dashboard reads, metrics: from PGSCHED_READ_DSN when set
    read_pool: AsyncConnectionPool | None = None
    tracer: Tracer | None = None  # OpenTelemetry spans for REST enqueues (PGSCHED_OTEL=1)

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock | None = None) -> ApiState:
        clock = clock or SystemClock()
        pool = api_pool(settings)
        read_pool = replica_pool(settings)
        cache = dedupe_cache_for(settings)
        return cls(
            settings=settings,
            clock=clock,
            pool=pool,
            jobs=AsyncJobStore(pool, clock=clock, cache=cache),
            operator=OperatorStore(pool, clock=clock),
            admin=AdminStore(pool, clock=clock),
            tokens=TokenStore(pool, clock=clock),
            schedules=ScheduleStore(pool, clock=clock),
            workflows=AsyncWorkflowStore(pool),
            tasks=AsyncTaskStore(pool),
            retention=RetentionStore(pool, clock=clock),
            cache=cache,
            auth_failures=AuthFailureLimiter(
                limit=settings.api_auth_failure_limit, window=settings.api_auth_failure_window_seconds
            ),
            reads=ReadRouter(
                ReadStores.over(pool, clock), None if read_pool is None else ReadStores.over(read_pool, clock)
            ),
            read_pool=read_pool,
            tracer=otel_tracer() if settings.otel else None,
        )


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.pgsched
    return state
