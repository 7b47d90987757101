"""Bearer authentication and scopes: stored tokens, the PGSCHED_API_TOKEN admin token, optional JWT (HS256).

Interface layer. Read endpoints need ``read``, mutations ``write``, tokens and purges ``admin``.
JWTs must carry ``exp`` within ``api_jwt_max_lifetime_seconds``; a client address with too many
failed attempts gets 429 (``pgsched.api.throttle``) before its token reaches the database.
Comparisons are constant-time; tokens are never logged, not even on failure.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

import jwt
from starlette.requests import Request
from starlette.responses import Response

from pgsched.api.errors import ApiError
from pgsched.api.state import ApiState, api_state
from pgsched.token_store import Scope

__all__ = ["Endpoint", "authorize", "protected"]

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="pgsched"'}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


def _jwt_scope(token: str, secret: str, max_lifetime: float) -> Scope | None:
    """The highest scope named in the token's ``scope`` (or ``scopes``) claim; None if it names none.

    The token must carry ``exp``, no further than ``max_lifetime`` seconds after its ``iat`` (when
    given) and after now: a JWT that never expires, or lives for years, is refused.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.InvalidTokenError:
        raise _unauthorized("invalid or expired JWT (exp is required)") from None
    exp = float(claims["exp"])
    iat = claims.get("iat")
    starts = [time.time()] + ([float(iat)] if isinstance(iat, int | float) and not isinstance(iat, bool) else [])
    if any(exp - start > max_lifetime for start in starts):
        raise _unauthorized(f"JWT lifetime is over the maximum of {max_lifetime:g} seconds")
    raw = claims.get("scope", claims.get("scopes", ""))
    names = raw.split() if isinstance(raw, str) else [str(s) for s in raw] if isinstance(raw, list) else []
    scopes = [Scope(n) for n in names if n in {s.value for s in Scope}]
    return max(scopes, key=lambda s: s.rank) if scopes else None


async def _scope_of(state: ApiState, token: str) -> Scope | None:
    settings = state.settings
    if settings.api_token and hmac.compare_digest(token.encode(), settings.api_token.encode()):
        return Scope.ADMIN
    if token.startswith("pgsched_"):
        found = await state.tokens.token_verify(token)
        if found is None:
            raise _unauthorized("unknown or revoked token")
        return found.scope
    if settings.api_jwt_secret and token.count(".") == 2:
        return _jwt_scope(token, settings.api_jwt_secret, settings.api_jwt_max_lifetime_seconds)
    raise _unauthorized("unknown or revoked token")


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    if scheme.lower() != "bearer" or not token or len(token) > 4096:
        raise _unauthorized("malformed Authorization header: use Bearer <token>")
    return token


async def _authenticate(request: Request, state: ApiState) -> Scope | None:
    """The caller's scope; too many failures from its address get 429 before any database lookup."""
    client = request.client.host if request.client else "unknown"
    wait = state.auth_failures.retry_after(client)
    if wait is not None:
        log.warning("auth throttled", extra={"event": "api_auth_throttled", "client": client})
        raise ApiError(
            429,
            "too_many_failures",
            f"too many failed authentications; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    token = _bearer(request)  # no or malformed credentials cost no lookup, so they are not counted
    try:
        return await _scope_of(state, token)
    except ApiError as exc:
        if exc.status == 401:
            state.auth_failures.record_failure(client)
        raise


async def authorize(request: Request, needed: Scope) -> None:
    """Raise 401 without valid credentials, 403 when their scope is below ``needed``, 429 after
    repeated failures from one client address."""
    state = api_state(request)
    if not state.settings.api_auth_enabled:
        return
    scope = await _authenticate(request, state)
    if scope is None or not scope.allows(needed):
        log.info("scope refused", extra={"event": "api_forbidden", "path": request.url.path, "needed": str(needed)})
        raise ApiError(403, "forbidden", f"this operation needs the {needed} scope")


def protected(needed: Scope) -> Callable[[Endpoint], Endpoint]:
    """Decorate an endpoint so it runs only for callers holding ``needed``."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            await authorize(request, needed)
            return await endpoint(request)

        return guarded

    return wrap
