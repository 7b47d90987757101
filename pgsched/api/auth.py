"""Bearer authentication and scopes: stored tokens, the PGSCHED_API_TOKEN admin token, optional JWT (HS256).

Interface layer. Read endpoints need ``read``, mutations ``write``, tokens and purges ``admin``.
Comparisons are constant-time; tokens are never logged, not even on failure.
"""

from __future__ import annotations

import functools
import hmac
import logging
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


def _jwt_scope(token: str, secret: str) -> Scope | None:
    """The highest scope named in the token's ``scope`` (or ``scopes``) claim; None if it names none."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": []})
    except jwt.InvalidTokenError:
        raise _unauthorized("invalid or expired JWT") from None
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
        return _jwt_scope(token, settings.api_jwt_secret)
    raise _unauthorized("unknown or revoked token")


async def authorize(request: Request, needed: Scope) -> None:
    """Raise 401 without valid credentials, 403 when their scope is below ``needed``."""
    state = api_state(request)
    if not state.settings.api_auth_enabled:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    if scheme.lower() != "bearer" or not token or len(token) > 4096:
        raise _unauthorized("malformed Authorization header: use Bearer <token>")
    scope = await _scope_of(state, token)
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
