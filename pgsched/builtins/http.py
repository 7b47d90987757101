"""``pgsched.http``: call a URL as a job. Only hosts on the worker's allowlist (``--http-allow``).

Arguments: ``url``, ``method`` (default POST), ``headers``, and ``body`` (text) or ``json``;
optionally ``timeout`` (seconds, default 30) and ``max_response_bytes``. Sends
``Idempotency-Key: <job id>`` so the receiver can drop a repeat of an at-least-once delivery.
2xx is success (result: status, body); anything else fails the attempt with the status.
Redirects are not followed (they could leave the allowlist); proxies from the environment are ignored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from pgsched.context import current_job
from pgsched.errors import PgschedError, ValidationError
from pgsched.tasks import Task

__all__ = ["HTTP_TASK", "HttpStatusError", "host_allowed", "http_task"]

HTTP_TASK = "pgsched.http"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
DEFAULT_MAX_RESPONSE = 64 * 1024


class HttpStatusError(PgschedError):
    """The server answered with a non-2xx status."""

    def __init__(self, status: int, method: str, url: str, body: str) -> None:
        detail = f": {body[:300]}" if body else ""
        super().__init__(f"HTTP {status} from {method} {url}{detail}")
        self.status = status


def host_allowed(host: str, port: int | None, allowlist: Sequence[str]) -> bool:
    """Entries are ``host``, ``host:port`` or ``*.domain`` (any subdomain), compared case-insensitively."""
    host = host.lower().rstrip(".")
    for entry in (e.strip().lower() for e in allowlist):
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif ":" in entry and not entry.startswith("["):
            name, _, entry_port = entry.rpartition(":")
            if name == host and port is not None and entry_port == str(port):
                return True
        elif entry == host:
            return True
    return False


def _check_url(url: Any, allowlist: Sequence[str]) -> tuple[str, int | None]:
    if not isinstance(url, str):
        raise ValidationError("url", "must be a string")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError("url", f"must be an http or https URL with a host, got {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not host_allowed(parts.hostname, port, allowlist):
        raise PermissionError(
            f"host {parts.hostname!r} is not in this worker's HTTP allowlist (start it with --http-allow HOST)"
        )
    return parts.hostname, port


def _headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValidationError("headers", "must be an object of string values")
    return {k: v for k, v in headers.items() if k.lower() != "idempotency-key"}


def http_task(*, allowlist: Sequence[str]) -> Task:
    allowed = tuple(allowlist)

    async def http(**kwargs: Any) -> dict[str, Any]:
        return await request(allowlist=allowed, **kwargs)

    return Task(name=HTTP_TASK, func=http, queue="default")


async def request(
    *,
    allowlist: Sequence[str],
    url: Any,
    method: Any = "POST",
    headers: Any = None,
    body: Any = None,
    json: Any = None,
    timeout: Any = 30.0,  # noqa: ASYNC109 - a job argument, read from the job's JSON
    max_response_bytes: int = DEFAULT_MAX_RESPONSE,
) -> dict[str, Any]:
    """Send one request; returns ``{status, body, body_truncated}`` for a 2xx answer."""
    verb = str(method).upper()
    if verb not in _METHODS:
        raise ValidationError("method", f"must be one of {', '.join(sorted(_METHODS))}")
    if body is not None and json is not None:
        raise ValidationError("body", "give body or json, not both")
    if body is not None and not isinstance(body, str):
        raise ValidationError("body", "must be a string (use json for structured data)")
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ValidationError("timeout", "must be a positive number of seconds")
    _check_url(url, allowlist)
    sent = _headers(headers)
    with contextlib.suppress(LookupError):  # LookupError: called directly, outside a job
        sent["Idempotency-Key"] = str(current_job().id)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        response = await client.request(verb, url, headers=sent, content=body, json=json)
    text = response.text
    truncated = len(text) > max_response_bytes
    text = text[:max_response_bytes]
    if not 200 <= response.status_code < 300:
        raise HttpStatusError(response.status_code, verb, url, text)
    return {"status": response.status_code, "body": text, "body_truncated": truncated}
