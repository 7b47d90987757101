"""Token endpoints (admin scope): create (the token is in this one response only, optionally expiring), list, revoke.

Interface layer over ``TokenStore``; hashes never leave the data layer.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import protected
from pgsched.api.state import api_state
from pgsched.api.validation import parse_id, read_object
from pgsched.errors import ValidationError
from pgsched.token_store import Scope

__all__ = ["routes"]


async def create_token(request: Request) -> Response:
    body = await read_object(request)
    unknown = set(body) - {"name", "scope", "expires_in_seconds"}
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unknown field (name, scope, expires_in_seconds)")
    if "name" not in body:
        raise ValidationError("name", "is required")
    token, plain = await api_state(request).tokens.token_create(
        body["name"], body.get("scope", "read"), expires_in=body.get("expires_in_seconds")
    )
    return JSONResponse({**token.to_dict(), "token": plain}, status_code=201)


async def list_tokens(request: Request) -> Response:
    tokens = await api_state(request).tokens.token_list()
    return JSONResponse({"items": [t.to_dict() for t in tokens]})


async def revoke_token(request: Request) -> Response:
    token = await api_state(request).tokens.token_revoke(parse_id(request.path_params["id"]))
    return JSONResponse(token.to_dict())


routes = [
    Route("/tokens", protected(Scope.ADMIN)(create_token), methods=["POST"]),
    Route("/tokens", protected(Scope.ADMIN)(list_tokens), methods=["GET"]),
    Route("/tokens/{id:int}", protected(Scope.ADMIN)(revoke_token), methods=["DELETE"]),
]
