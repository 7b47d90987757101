"""Settings, read once from the environment (``Settings.from_env``) and passed down.

A leaf module and the only one that reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pgsched.errors import ConfigurationError
from pgsched.job import DEFAULT_MAX_PAYLOAD_BYTES

__all__ = ["Settings"]


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob pgsched has. Defaults are production values; tests set them low."""

    dsn: str | None = None
    redis_url: str | None = None
    api_token: str | None = None
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 2.0
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    redis_namespace: str = "pgsched"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            dsn=env.get("PGSCHED_DSN") or None,
            redis_url=env.get("PGSCHED_REDIS_URL") or None,
            api_token=env.get("PGSCHED_API_TOKEN") or None,
            lease_seconds=_float(env, "PGSCHED_LEASE_SECONDS", 30.0),
            heartbeat_seconds=_float(env, "PGSCHED_HEARTBEAT_SECONDS", 5.0),
            poll_seconds=_float(env, "PGSCHED_POLL_SECONDS", 2.0),
            max_payload_bytes=int(_float(env, "PGSCHED_MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES)),
            redis_namespace=env.get("PGSCHED_REDIS_NAMESPACE") or "pgsched",
        )
        return settings.with_(**{k: v for k, v in overrides.items() if v is not None})

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def require_dsn(self) -> str:
        if not self.dsn:
            raise ConfigurationError("no database: set PGSCHED_DSN (or pass --dsn), or run `pgsched dev`")
        return self.dsn
