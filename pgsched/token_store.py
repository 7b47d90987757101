"""TokenStore: REST API bearer tokens, stored as SHA-256 hashes of their secrets, revocable.

Data layer: the only code that runs token SQL. A token reads ``pgsched_<id>_<secret>``; the id
finds the row, the secret is hashed and compared in constant time. Tokens are never logged and
the plain token exists only in the value ``token_create`` returns. A token may expire
(``expires_at``); its ``last_used_at`` is written at most once a minute, not per request.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgsched import db
from pgsched.clock import Clock, SystemClock
from pgsched.errors import PgschedError, ValidationError
from pgsched.queries import query

__all__ = [
    "MAX_EXPIRES_IN",
    "ApiToken",
    "Scope",
    "TokenNotFound",
    "TokenStore",
    "parse_token",
    "validate_expires_in",
    "validate_scope",
    "validate_token_name",
]

_TOKEN_RE = re.compile(r"^pgsched_([1-9][0-9]{0,17})_([A-Za-z0-9_-]{20,100})$")
MAX_EXPIRES_IN = 10 * 366 * 86400.0
# A token's last_used_at moves at most this often: a busy token costs no write per request.
TOUCH_EVERY = timedelta(minutes=1)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$")


class Scope(StrEnum):
    """What a token may do; each scope includes the ones before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Scope).index(self)

    def allows(self, needed: Scope) -> bool:
        return self.rank >= needed.rank


class TokenNotFound(PgschedError, LookupError):
    """No API token with that id."""

    def __init__(self, token_id: int) -> None:
        super().__init__(f"token {token_id} does not exist")
        self.token_id = token_id


@dataclass(frozen=True, slots=True)
class ApiToken:
    """One row of ``pgsched.api_tokens`` without its hash."""

    id: int
    name: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ApiToken:
        return cls(
            id=row["id"],
            name=row["name"],
            scope=Scope(row["scope"]),
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
            expires_at=row["expires_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        def iso(v: datetime | None) -> str | None:
            return v.isoformat() if v is not None else None

        return {
            "id": self.id,
            "name": self.name,
            "scope": str(self.scope),
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
            "expires_at": iso(self.expires_at),
        }


def parse_token(token: str) -> tuple[int, str] | None:
    """(id, secret) of a well-formed pgsched token, else None."""
    match = _TOKEN_RE.match(token)
    return (int(match.group(1)), match.group(2)) if match else None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def validate_expires_in(seconds: object) -> float | None:
    """Seconds until a new token expires: a positive number up to ten years, or None (never)."""
    if seconds is None:
        return None
    # An int past a float's range (a JSON integer of 309+ digits) is compared as it is: float() would overflow.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValidationError("expires_in_seconds", f"must be a number of seconds from 1 to {MAX_EXPIRES_IN:g}")
    if not (isinstance(seconds, int) or math.isfinite(seconds)) or not 1 <= seconds <= MAX_EXPIRES_IN:
        raise ValidationError("expires_in_seconds", f"must be a number of seconds from 1 to {MAX_EXPIRES_IN:g}")
    return float(seconds)


def validate_token_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValidationError("name", f"invalid token name {name!r}: letters, digits, _ . : @ - (up to 100)")
    return name


def validate_scope(scope: object) -> Scope:
    try:
        return Scope(str(scope))
    except ValueError:
        raise ValidationError("scope", f"must be read, write or admin, got {scope!r}") from None


class TokenStore:
    """Create, list, revoke and verify API tokens."""

    def __init__(self, pool: AsyncConnectionPool, *, clock: Clock | None = None) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def _cursor(self) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        with db.translated(field="name"):
            async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                yield cur

    async def token_create(
        self, name: str, scope: Scope | str, *, expires_in: float | None = None
    ) -> tuple[ApiToken, str]:
        """A new token and its plain value (shown once, never stored); ``expires_in`` seconds, None: never."""
        validate_token_name(name)
        checked = validate_scope(scope)
        expiry = validate_expires_in(expires_in)
        secret = secrets.token_urlsafe(32)
        params = {
            "name": name,
            "scope": str(checked),
            "secret_hash": _hash(secret),
            "expires_in": expiry,
            "now": self._clock.db_now(),
        }
        async with self._cursor() as cur:
            await cur.execute(query("token_insert"), params)
            row = await cur.fetchone()
        assert row is not None
        return ApiToken.from_row(row), f"pgsched_{row['id']}_{secret}"

    async def token_list(self) -> list[ApiToken]:
        async with self._cursor() as cur:
            await cur.execute(query("token_list"))
            return [ApiToken.from_row(r) for r in await cur.fetchall()]

    async def token_revoke(self, token_id: int) -> ApiToken:
        async with self._cursor() as cur:
            await cur.execute(query("token_revoke"), {"id": token_id, "now": self._clock.db_now()})
            row = await cur.fetchone()
        if row is None:
            raise TokenNotFound(token_id)
        return ApiToken.from_row(row)

    async def token_verify(self, token: str) -> ApiToken | None:
        """The live token matching ``token``, or None (malformed, unknown, wrong secret or revoked)."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        token_id, secret = parsed
        async with self._cursor() as cur:
            await cur.execute(query("token_get"), {"id": token_id})
            row = await cur.fetchone()
            if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), _hash(secret)):
                return None
            found = ApiToken.from_row(row)
            now = self._clock.now()
            if found.revoked_at is not None or (found.expires_at is not None and found.expires_at <= now):
                return None
            if found.last_used_at is None or now - found.last_used_at >= TOUCH_EVERY:
                await cur.execute(query("token_touch"), {"id": token_id, "now": self._clock.db_now()})
        return found
