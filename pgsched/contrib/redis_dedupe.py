"""RedisDedupeCache: Redis as an L1 cache of run key -> job id, in front of PostgreSQL's unique index.

Data layer, and the only module that imports ``redis``. Every call has a short timeout and
goes through a circuit breaker: a slow, paused, blackholed or dead Redis costs at most one
timeout per cooldown, never an error to the caller. Keys are ``<namespace>:<scope>:runkey:<key>``,
where the scope (from the job store) names one database of one cluster. An entry is only a hint:
the job store verifies every hit against PostgreSQL before it answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
        self._namespace = settings.redis_namespace
        self._ttl = ttl_seconds(settings)
        self._sync = redis.Redis.from_url(settings.redis_url, **options)
        self._async = aioredis.Redis.from_url(settings.redis_url, **options)
        self._breaker = CircuitBreaker()

    @property
    def enabled(self) -> bool:
        return True

    def _keys(self, scope: str, run_keys: Sequence[str]) -> list[str]:
        return [f"{self._namespace}:{scope}:runkey:{k}" for k in run_keys]

    def _fill(self, pipe: Any, scope: str, entries: Mapping[str, int]) -> Any:
        """Queue one SET with the TTL per entry on a (sync or async) pipeline."""
        for key, job_id in zip(self._keys(scope, list(entries)), entries.values(), strict=True):
            pipe.set(key, job_id, ex=self._ttl)
        return pipe

    def get_many(self, scope: str, run_keys: Sequence[str]) -> dict[str, int]:
        if not self._breaker.allow():
            DEDUPE_CACHE_MISSES.inc(len(run_keys))
            return {}
        try:
            values = self._sync.mget(self._keys(scope, run_keys))
        except redis.RedisError as exc:
            self._failed(exc, len(run_keys))
            return {}
        return self._answer(run_keys, values)

    def put_many(self, scope: str, entries: Mapping[str, int]) -> None:
        if not entries or not self._breaker.allow():
            return
        try:
            self._fill(self._sync.pipeline(transaction=False), scope, entries).execute()
            self._breaker.success()
        except redis.RedisError as exc:
            self._failed(exc, 0)

    def forget(self, scope: str, run_keys: Sequence[str]) -> None:
        if not run_keys or not self._breaker.allow():
            return
        try:
            self._sync.delete(*self._keys(scope, run_keys))
            self._breaker.success()
        except redis.RedisError as exc:
            self._failed(exc, 0)

    async def get_many_async(self, scope: str, run_keys: Sequence[str]) -> dict[str, int]:
        if not self._breaker.allow():
            DEDUPE_CACHE_MISSES.inc(len(run_keys))
            return {}
        try:
            values = await self._async.mget(self._keys(scope, run_keys))
        except (redis.RedisError, TimeoutError) as exc:
            self._failed(exc, len(run_keys))
            return {}
        return self._answer(run_keys, values)

    async def put_many_async(self, scope: str, entries: Mapping[str, int]) -> None:
        if not entries or not self._breaker.allow():
            return
        try:
            await self._fill(self._async.pipeline(transaction=False), scope, entries).execute()
            self._breaker.success()
        except (redis.RedisError, TimeoutError) as exc:
            self._failed(exc, 0)

    async def forget_async(self, scope: str, run_keys: Sequence[str]) -> None:
        if not run_keys or not self._breaker.allow():
            return
        try:
            await self._async.delete(*self._keys(scope, run_keys))
            self._breaker.success()
        except (redis.RedisError, TimeoutError) as exc:
            self._failed(exc, 0)

    def status(self) -> dict[str, Any]:
        """For `pgsched doctor` and /health: the breaker's state and, once per call, a ping."""
        state: dict[str, Any] = {"state": "ok", "circuit": self._breaker.state, "ttl_seconds": self._ttl}
        try:
            self._sync.ping()
            self._breaker.success()
        except redis.RedisError as exc:
            self._failed(exc, 0)
            state["state"] = "error"
        if self._breaker.last_error and state["state"] != "ok":
            state["error"] = self._breaker.last_error
        return state

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        await self._async.aclose()
        self._sync.close()

    def _answer(self, run_keys: Sequence[str], values: Sequence[Any]) -> dict[str, int]:
        self._breaker.success()
        hits: dict[str, int] = {}
        for key, value in zip(run_keys, values, strict=True):
            try:
                hits[key] = int(value)
            except (TypeError, ValueError):
                continue
        DEDUPE_CACHE_HITS.inc(len(hits))
        DEDUPE_CACHE_MISSES.inc(len(run_keys) - len(hits))
        return hits

    def _failed(self, exc: BaseException, misses: int) -> None:
        DEDUPE_CACHE_ERRORS.inc()
        DEDUPE_CACHE_MISSES.inc(misses)
        self._breaker.failure(exc)
