"""Request input: the body-size limit (enforced while the body streams in), JSON parsing, query
parameters, path ids and the opaque keyset cursor.

Interface layer: turns raw HTTP input into checked Python values or an ``ApiError`` (400/413/422);
it never touches the database.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgsched.api.errors import ApiError, error_body
from pgsched.errors import ValidationError
from pgsched.job import validate_meta, validate_queue, validate_tags, validate_task_name
from pgsched.job_row import JobState
from pgsched.schedule_store import SCHEDULE_NAME_RE

__all__ = [
    "JOB_CURSOR_RE",
    "BodyLimitMiddleware",
    "MAX_JSON_DEPTH",
    "check_json_tree",
    "decode_cursor",
    "decode_name_cursor",
    "encode_cursor",
    "page_limit",
    "parse_id",
    "parse_schedule_name",
    "query_filters",
    "read_json",
    "read_object",
]

BIGINT_MAX = 2**63 - 1
# Job ids up to 18 digits: every string the pattern matches is a bigint, as the document says.
JOB_CURSOR_RE = re.compile(r"^[1-9][0-9]{0,17}$")
# Documented in the README: deeper bodies get 422 (PostgreSQL and Python recursion stay far away).
MAX_JSON_DEPTH = 64
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413: at once from Content-Length, else while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        exc = _too_large(self.max_bytes)
        body = json.dumps(error_body(exc.code, exc.message, exc.field)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the request body is over the limit of {limit} bytes")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request) -> Any:
    """The parsed JSON body; 400 when it is empty, not UTF-8 or not JSON (NaN and Infinity included);
    422 naming the field when it nests deeper than ``MAX_JSON_DEPTH`` or holds a lone surrogate.

    Every endpoint that reads a body comes through here, so these rules hold everywhere.
    """
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "malformed_json", "the request body must be JSON")
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "the request body is not UTF-8") from None
    except RecursionError:
        raise ValidationError("body", f"nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"the request body is not valid JSON: {exc}") from None
    check_json_tree(value)
    return _integral_floats_as_ints(value)


def _integral_floats_as_ints(value: Any, key: str | None = None) -> Any:
    """``3.0`` where an integer is expected is an integer in JSON Schema (and to every JSON client);
    the values of ``args`` stay as sent, since a task may tell 3.0 from 3."""
    if key == "args":
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v, k) for k, v in value.items()}
    return value


def check_json_tree(value: Any) -> None:
    """Refuse nesting deeper than ``MAX_JSON_DEPTH`` and strings (or keys) with lone UTF-16 surrogates,
    which PostgreSQL cannot store; the error names the path, e.g. ``args.a.b`` or ``jobs[2].run_key``."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE_RE.search(item):
                raise ValidationError(path or "body", "contains a lone UTF-16 surrogate (not valid Unicode)")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth >= MAX_JSON_DEPTH:
            raise ValidationError(path or "body", f"nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))
            continue
        for key, v in item.items():
            child = f"{path}.{key}" if path else key
            if _SURROGATE_RE.search(key):
                raise ValidationError(path or "body", "has a key with a lone UTF-16 surrogate (not valid Unicode)")
            stack.append((v, child, depth + 1))


async def read_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; an absent body counts as ``{}`` when ``optional``."""
    if optional and not (await request.body()).strip():
        return {}
    value = await read_json(request)
    if not isinstance(value, dict):
        raise ApiError(400, "malformed_json", f"the request body must be a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def parse_id(value: int | str, field: str = "id") -> int:
    """A positive bigint from a path segment; anything else is a 404 (no such resource)."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not 0 < int(text) <= BIGINT_MAX:
        raise ApiError(404, "not_found", f"no resource with {field} {text[:40]!r}", field=field)
    return int(text)


def page_limit(request: Request, *, default: int, maximum: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 1 <= int(raw) <= maximum:
        raise ApiError(400, "invalid_parameter", f"limit must be an integer from 1 to {maximum}", field="limit")
    return int(raw)


def encode_cursor(last: int | str) -> str:
    """The cursor of the page after ``last``: a job id, or a schedule name (pages of schedules)."""
    return str(last)


def _bad_cursor() -> ApiError:
    return ApiError(400, "invalid_parameter", "cursor must be a next_cursor this API returned", field="cursor")


def decode_cursor(request: Request) -> int | None:
    """The job id to continue before, from the ``cursor`` parameter (the previous page's next_cursor)."""
    raw = request.query_params.get("cursor")
    if raw is None:
        return None
    if not JOB_CURSOR_RE.match(raw):
        raise _bad_cursor()
    return int(raw)


def decode_name_cursor(request: Request) -> str | None:
    """The schedule name to continue after, from the ``cursor`` parameter."""
    raw = request.query_params.get("cursor")
    if raw is None:
        return None
    if not SCHEDULE_NAME_RE.fullmatch(raw):
        raise _bad_cursor()
    return raw


def parse_schedule_name(text: str) -> str:
    """A schedule name from a path segment; anything that cannot be a name is a 404."""
    if not SCHEDULE_NAME_RE.fullmatch(text):
        raise ApiError(404, "not_found", f"no schedule named {text[:40]!r}", field="name")
    return text


def _json_param(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ValidationError(field, 'must be a JSON object, e.g. {"tenant": "acme"}') from None


def query_filters(request: Request, *, with_state: bool) -> dict[str, Any]:
    """state / queue / task filters of a list endpoint, each checked (400 naming the parameter)."""
    params = request.query_params
    out: dict[str, Any] = {"queue": None, "task": None}
    try:
        if "queue" in params:
            out["queue"] = validate_queue(params["queue"])
        if "task" in params:
            out["task"] = validate_task_name(params["task"])
        if "tag" in params:
            out["tags"] = list(validate_tags(params.getlist("tag"), "tag"))
        if "meta" in params:
            out["meta"] = validate_meta(_json_param(params["meta"], "meta"), field_name="meta", max_bytes=8192)
    except ValidationError as exc:
        raise ApiError(400, "invalid_parameter", exc.message, field=exc.field) from None
    if with_state:
        state = params.get("state")
        if state is not None and state not in {s.value for s in JobState}:
            choices = ", ".join(s.value for s in JobState)
            raise ApiError(400, "invalid_parameter", f"state must be one of {choices}", field="state")
        out["state"] = state
    return out
