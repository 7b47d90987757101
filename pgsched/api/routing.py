"""One route per path, whatever the number of methods on it, so that a 405 carries an ``Allow``
header listing every method of the path; and unknown query parameters get a 400 naming them.

Interface layer wiring. Starlette answers a wrong method with the ``Allow`` of the first route whose
path matched, so ``GET /jobs`` and ``POST /jobs`` as two routes made ``OPTIONS /jobs`` say
``Allow: POST``. ``merge_routes`` folds them into one route that dispatches on the method.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pgsched.api.auth import Endpoint
from pgsched.api.errors import ApiError

__all__ = ["merge_routes"]


_CONVERTOR_RE = re.compile(r"\{(\w+):\w+\}")


def _plain_dispatcher(handlers: dict[str, Endpoint]) -> Endpoint:
    async def dispatch(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return dispatch


def _dispatcher(path: str, handlers: dict[str, Endpoint], allowed_query: Mapping[str, frozenset[str]]) -> Endpoint:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        known = allowed_query.get(method, frozenset())
        for name in request.query_params:
            if name not in known:
                choices = ", ".join(sorted(known)) or "none"
                raise ApiError(400, "invalid_parameter", f"unknown query parameter (allowed: {choices})", field=name)
        return await handlers[method](request)

    dispatch.__name__ = f"dispatch {path}"
    return dispatch


def merge_routes(
    routes: Sequence[BaseRoute], *, query_parameters: Mapping[str, Mapping[str, frozenset[str]]]
) -> list[BaseRoute]:
    """The routes with every plain ``Route`` of one path folded into one; other routes (mounts) kept.

    ``query_parameters`` maps a path to method to the query parameters the method accepts.
    """
    handlers: dict[str, dict[str, Endpoint]] = {}
    order: list[str | BaseRoute] = []
    for route in routes:
        if not isinstance(route, Route) or route.methods is None:
            order.append(route)
            continue
        if route.path not in handlers:
            handlers[route.path] = {}
            order.append(route.path)
        for method in route.methods - {"HEAD"}:
            handlers[route.path][method] = route.endpoint
    merged: list[BaseRoute] = []
    for item in order:
        if not isinstance(item, str):
            merged.append(item)
            continue
        allowed = query_parameters.get(_CONVERTOR_RE.sub(r"{\1}", item))
        if allowed is None:  # not an API operation of the document (the dashboard): no check
            merged.append(Route(item, _plain_dispatcher(handlers[item]), methods=sorted(handlers[item])))
            continue
        merged.append(Route(item, _dispatcher(item, handlers[item], allowed), methods=sorted(handlers[item])))
    return merged
