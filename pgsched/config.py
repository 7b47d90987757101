"""Settings, read once from the environment (``Settings.from_env``) and passed down.

A leaf module and the only one that reads ``os.environ``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgsched.errors import ConfigurationError
from pgsched.job import DEFAULT_MAX_PAYLOAD_BYTES

__all__ = [
    "BUILTIN_CAP_DEFAULT_BYTES",
    "BUILTIN_CAP_HARD_MAX_BYTES",
    "DEFAULT_RESULT_MAX_BYTES",
    "Settings",
    "check_write_dsn",
    "output_cap",
]

DEFAULT_RESULT_MAX_BYTES = 1024 * 1024  # as the args cap; jsonb itself allows up to 256 MiB
# Output kept by the built-in tasks (shell stdout/stderr, http response body): the server default and
# the ceiling no setting may pass (a job may only ask for less than the setting).
BUILTIN_CAP_DEFAULT_BYTES = 64 * 1024
BUILTIN_CAP_HARD_MAX_BYTES = 8 * 1024 * 1024


def output_cap(name: str, value: int) -> int:
    """``value`` if it is a valid built-in output cap, else ConfigurationError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= BUILTIN_CAP_HARD_MAX_BYTES:
        raise ConfigurationError(f"{name} must be from 1 to {BUILTIN_CAP_HARD_MAX_BYTES} bytes, got {value!r}")
    return value


def _entries(env: Mapping[str, str], name: str, separators: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    for sep in separators[1:]:
        raw = raw.replace(sep, separators[0])
    return tuple(e.strip() for e in raw.split(separators[0]) if e.strip())


def _float(env: Mapping[str, str], name: str, default: float, *, zero_ok: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ConfigurationError(f"{name} must be {'0 or more' if zero_ok else 'positive'}, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name} must be on or off, got {raw!r}")


# What target_session_attrs may say in PGSCHED_DSN: pgsched writes, so only the primary will do.
_WRITABLE_SESSION_ATTRS = frozenset({"read-write", "primary"})


def check_write_dsn(dsn: str | None, env: Mapping[str, str], *, name: str = "PGSCHED_DSN") -> None:
    """ConfigurationError (naming the variable ``name``) when ``dsn`` could land on a standby: several hosts with no
    ``target_session_attrs=read-write`` (libpq would take the first that answers, a standby included,
    and every write there fails), or a session attribute that prefers a standby. A DSN that does not
    parse is left to the command's own check, which names the syntax error."""
    if not dsn:
        return
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return
    hosts = str(params.get("host") or params.get("hostaddr") or env.get("PGHOST") or "").split(",")
    attrs = str(params.get("target_session_attrs") or env.get("PGTARGETSESSIONATTRS") or "any")
    if attrs in _WRITABLE_SESSION_ATTRS or (len(hosts) < 2 and attrs == "any"):
        return
    why = f"lists {len(hosts)} hosts" if attrs == "any" else f"has target_session_attrs={attrs}"
    raise ConfigurationError(
        f"{name} {why}: add target_session_attrs=read-write so that pgsched only ever writes to the primary"
    )


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or "").strip().lower() or choices[0]
    if raw not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob pgsched has. Defaults are production values; tests set them low."""

    dsn: str | None = None
    # Behind a transaction-mode pooler: a direct (or session-mode) DSN for what needs a session (LISTEN,
    # the leader and liveness locks, migrate's lock); a replica's DSN for lists, the dashboard and metrics;
    # server-side prepared statements through a pooler: auto (off when a pooler is seen), on, off.
    session_dsn: str | None = None
    read_dsn: str | None = None
    prepared_statements: str = "auto"
    redis_url: str | None = None
    api_token: str | None = None
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 2.0
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    # A task's return value as JSON (UTF-8 bytes); a bigger one fails the attempt instead of being stored.
    result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES
    redis_namespace: str = "pgsched"
    # Redis L1 dedupe cache: per-call timeout (short: a blackholed Redis costs little), and how long
    # a run key is remembered (capped by retention).
    redis_timeout_seconds: float = 0.01
    redis_ttl_seconds: float = 3600.0
    # Leader: how often a candidate tries the lock, and how long the server keeps an idle
    # (e.g. SIGSTOPped) leader session before it kills it and frees the lock.
    election_interval_seconds: float = 1.0
    leader_idle_timeout_seconds: float = 10.0
    reaper_interval_seconds: float = 2.0
    max_worker_losses: int = 3
    prune_interval_seconds: float = 60.0
    vacuum_interval_seconds: float = 2.0
    retention_succeeded_seconds: float = 86400.0
    retention_cancelled_seconds: float = 7 * 86400.0
    retention_dead_seconds: float = 30 * 86400.0
    # Width of one time partition of finished jobs (by purge_at): retention drops a whole partition at a time.
    history_partition_seconds: float = 86400.0
    # REST API: auth (off only on loopback), optional JWT secret, open probes, limits.
    api_auth_enabled: bool = True
    api_jwt_secret: str | None = None
    api_public_health: bool = True
    api_public_metrics: bool = False
    api_public_openapi: bool = False
    # JWTs must carry exp, at most this far after iat (and after now).
    api_jwt_max_lifetime_seconds: float = 86400.0
    # Hostile clients: failed authentications per client address and window before 429, and the
    # server's read deadlines and connection cap (see pgsched.api.serve).
    api_auth_failure_limit: int = 10
    api_auth_failure_window_seconds: float = 60.0
    api_header_timeout_seconds: float = 10.0
    api_body_timeout_seconds: float = 30.0
    api_max_connections: int = 1000
    api_max_body_bytes: int = 1024 * 1024
    api_page_size: int = 50
    api_max_page_size: int = 1000
    api_statement_timeout_seconds: float = 5.0
    # Built-in tasks (pgsched.builtins). shell_allow: the commands pgsched.shell may run (empty: none);
    # shell_user: who runs them when the worker is root; http_allow: host[:port] entries pgsched.http
    # may call; the caps bound what a job keeps (a job may ask for less, never more).
    shell_allow: tuple[str, ...] = ()
    shell_user: str = "nobody"
    shell_max_output_bytes: int = BUILTIN_CAP_DEFAULT_BYTES
    http_allow: tuple[str, ...] = ()
    http_max_response_bytes: int = BUILTIN_CAP_DEFAULT_BYTES
    # OpenTelemetry spans for enqueue and each attempt (needs pgsched[otel]; the SDK is the application's).
    otel: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            dsn=env.get("PGSCHED_DSN") or None,
            session_dsn=env.get("PGSCHED_SESSION_DSN") or None,
            read_dsn=env.get("PGSCHED_READ_DSN") or None,
            prepared_statements=_choice(env, "PGSCHED_PREPARED_STATEMENTS", ("auto", "on", "off")),
            redis_url=env.get("PGSCHED_REDIS_URL") or None,
            api_token=env.get("PGSCHED_API_TOKEN") or None,
            lease_seconds=_float(env, "PGSCHED_LEASE_SECONDS", 30.0),
            heartbeat_seconds=_float(env, "PGSCHED_HEARTBEAT_SECONDS", 5.0),
            poll_seconds=_float(env, "PGSCHED_POLL_SECONDS", 2.0),
            max_payload_bytes=int(_float(env, "PGSCHED_MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES)),
            result_max_bytes=int(_float(env, "PGSCHED_RESULT_MAX_BYTES", DEFAULT_RESULT_MAX_BYTES)),
            redis_namespace=env.get("PGSCHED_REDIS_NAMESPACE") or "pgsched",
            redis_timeout_seconds=_float(env, "PGSCHED_REDIS_TIMEOUT_SECONDS", 0.01),
            redis_ttl_seconds=_float(env, "PGSCHED_REDIS_TTL_SECONDS", 3600.0),
            election_interval_seconds=_float(env, "PGSCHED_ELECTION_INTERVAL_SECONDS", 1.0),
            leader_idle_timeout_seconds=_float(env, "PGSCHED_LEADER_IDLE_TIMEOUT_SECONDS", 10.0),
            reaper_interval_seconds=_float(env, "PGSCHED_REAPER_INTERVAL_SECONDS", 2.0),
            max_worker_losses=int(_float(env, "PGSCHED_MAX_WORKER_LOSSES", 3)),
            prune_interval_seconds=_float(env, "PGSCHED_PRUNE_INTERVAL_SECONDS", 60.0),
            vacuum_interval_seconds=_float(env, "PGSCHED_VACUUM_INTERVAL_SECONDS", 2.0, zero_ok=True),
            retention_succeeded_seconds=_float(env, "PGSCHED_RETENTION_SUCCEEDED_SECONDS", 86400.0),
            retention_cancelled_seconds=_float(env, "PGSCHED_RETENTION_CANCELLED_SECONDS", 7 * 86400.0),
            retention_dead_seconds=_float(env, "PGSCHED_RETENTION_DEAD_SECONDS", 30 * 86400.0),
            history_partition_seconds=_float(env, "PGSCHED_HISTORY_PARTITION_SECONDS", 86400.0),
            api_auth_enabled=_bool(env, "PGSCHED_API_AUTH", True),
            api_jwt_secret=env.get("PGSCHED_API_JWT_SECRET") or None,
            api_public_health=_bool(env, "PGSCHED_API_PUBLIC_HEALTH", True),
            api_public_metrics=_bool(env, "PGSCHED_API_PUBLIC_METRICS", False),
            api_public_openapi=_bool(env, "PGSCHED_API_PUBLIC_OPENAPI", False),
            api_jwt_max_lifetime_seconds=_float(env, "PGSCHED_API_JWT_MAX_LIFETIME_SECONDS", 86400.0),
            api_auth_failure_limit=int(_float(env, "PGSCHED_API_AUTH_FAILURE_LIMIT", 10)),
            api_auth_failure_window_seconds=_float(env, "PGSCHED_API_AUTH_FAILURE_WINDOW_SECONDS", 60.0),
            api_header_timeout_seconds=_float(env, "PGSCHED_API_HEADER_TIMEOUT_SECONDS", 10.0),
            api_body_timeout_seconds=_float(env, "PGSCHED_API_BODY_TIMEOUT_SECONDS", 30.0),
            api_max_connections=int(_float(env, "PGSCHED_API_MAX_CONNECTIONS", 1000)),
            api_max_body_bytes=int(_float(env, "PGSCHED_API_MAX_BODY_BYTES", 1024 * 1024)),
            api_page_size=int(_float(env, "PGSCHED_API_PAGE_SIZE", 50)),
            api_max_page_size=int(_float(env, "PGSCHED_API_MAX_PAGE_SIZE", 1000)),
            api_statement_timeout_seconds=_float(env, "PGSCHED_API_STATEMENT_TIMEOUT_SECONDS", 5.0),
            shell_allow=_entries(env, "PGSCHED_SHELL_ALLOW", "\n"),
            shell_user=env.get("PGSCHED_SHELL_USER") or "nobody",
            shell_max_output_bytes=output_cap(
                "PGSCHED_SHELL_MAX_OUTPUT_BYTES",
                int(_float(env, "PGSCHED_SHELL_MAX_OUTPUT_BYTES", BUILTIN_CAP_DEFAULT_BYTES)),
            ),
            http_allow=_entries(env, "PGSCHED_HTTP_ALLOW", ", \n\t"),
            http_max_response_bytes=output_cap(
                "PGSCHED_HTTP_MAX_RESPONSE_BYTES",
                int(_float(env, "PGSCHED_HTTP_MAX_RESPONSE_BYTES", BUILTIN_CAP_DEFAULT_BYTES)),
            ),
            otel=_bool(env, "PGSCHED_OTEL", False),
        )
        settings = settings.with_(**{k: v for k, v in overrides.items() if v is not None})
        check_write_dsn(settings.dsn, env)
        check_write_dsn(settings.session_dsn, env, name="PGSCHED_SESSION_DSN")  # leader, liveness: writes too
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def require_dsn(self) -> str:
        if not self.dsn:
            raise ConfigurationError("no database: set PGSCHED_DSN (or pass --dsn), or run `pgsched dev`")
        return self.dsn
