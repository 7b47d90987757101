"""RedisDedupeCache: Redis as an L1 cache of run key -> job id, in front of PostgreSQL's unique index.

Data layer, and the only module that imports ``redis``. Every call has a short timeout and
goes through a circuit breaker: a slow, paused or dead Redis costs at most one timeout per
cooldown, never an error to the caller. Entries expire within the job rows' shortest
retention, so the pruner can never leave a key pointing at a deleted row.
"""

from __future__ import annotations

from typing import Any

from pgsched.config import Settings
from pgsched.dedupe import CircuitBreaker
from pgsched.errors import ConfigurationError
from pgsched.metrics import DEDUPE_CACHE_ERRORS, DEDUPE_CACHE_HITS, DEDUPE_CACHE_MISSES

try:
    import redis
    import redis.asyncio as aioredis
except ImportError:  # pragma: no cover - exercised only without the extra
    redis = None  # type: ignore[assignment]
    aioredis = None  # type: ignore[assignment]

__all__ = ["RedisDedupeCache", "ttl_seconds"]


def ttl_seconds(settings: Settings) -> int:
    """The configured TTL, never longer than the shortest retention of a finished job."""
    shortest = min(
        settings.retention_succeeded_seconds, settings.retention_cancelled_seconds, settings.retention_dead_seconds
    )
    return max(1, int(min(settings.redis_ttl_seconds, shortest)))


class RedisDedupeCache:
    """Sync and async access to one Redis, sharing the key scheme, the TTL and the breaker."""

    def __init__(self, settings: Settings) -> None:
        if redis is None or aioredis is None:
            raise ConfigurationError("Redis support needs the redis extra: pip install 'pgsched[redis]'")
        if not settings.redis_url:
            raise ConfigurationError("RedisDedupeCache needs PGSCHED_REDIS_URL")
        timeout = settings.redis_timeout_seconds
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry_on_timeout": False,
            "health_check_interval": 0,
        }
        self._url = settings.redis_url
        self._prefix = f"{settings.redis_namespace}:runkey:"
        self._ttl = ttl_seconds(settings)
        self._sync = redis.Redis.from_url(settings.redis_url, **options)
        self._async = aioredis.Redis.from_url(settings.redis_url, **options)
        self._breaker = CircuitBreaker()

    def _key(self, run_key: str) -> str:
        return self._prefix + run_key

    def get(self, run_key: str) -> int | None:
        if not self._breaker.allow():
            DEDUPE_CACHE_MISSES.inc()
            return None
        try:
            value = self._sync.get(self._key(run_key))
        except redis.RedisError as exc:
            self._failed(exc)
            return None
        return self._answer(value)

    def put(self, run_key: str, job_id: int) -> None:
        if not self._breaker.allow():
            return
        try:
            self._sync.set(self._key(run_key), job_id, ex=self._ttl)
            self._breaker.success()
        except redis.RedisError as exc:
            self._failed(exc)

    async def get_async(self, run_key: str) -> int | None:
        if not self._breaker.allow():
            DEDUPE_CACHE_MISSES.inc()
            return None
        try:
            value = await self._async.get(self._key(run_key))
        except (redis.RedisError, TimeoutError) as exc:
            self._failed(exc)
            return None
        return self._answer(value)

    async def put_async(self, run_key: str, job_id: int) -> None:
        if not self._breaker.allow():
            return
        try:
            await self._async.set(self._key(run_key), job_id, ex=self._ttl)
            self._breaker.success()
        except (redis.RedisError, TimeoutError) as exc:
            self._failed(exc)

    def status(self) -> dict[str, Any]:
        """For `pgsched doctor` and /health: the breaker's state and, once per call, a ping."""
        state: dict[str, Any] = {"state": "ok", "circuit": self._breaker.state, "ttl_seconds": self._ttl}
        try:
            self._sync.ping()
            self._breaker.success()
        except redis.RedisError as exc:
            self._failed(exc)
            state["state"] = "error"
        if self._breaker.last_error and state["state"] != "ok":
            state["error"] = self._breaker.last_error
        return state

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        await self._async.aclose()
        self._sync.close()

    def _answer(self, value: Any) -> int | None:
        self._breaker.success()
        if value is None:
            DEDUPE_CACHE_MISSES.inc()
            return None
        try:
            job_id = int(value)
        except ValueError:
            DEDUPE_CACHE_MISSES.inc()
            return None
        DEDUPE_CACHE_HITS.inc()
        return job_id

    def _failed(self, exc: BaseException) -> None:
        DEDUPE_CACHE_ERRORS.inc()
        DEDUPE_CACHE_MISSES.inc()
        self._breaker.failure(exc)
