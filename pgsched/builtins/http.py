"""``pgsched.http``: call a URL as a job. Only ``host:port`` targets on the worker's allowlist.

Arguments: ``url``, ``method`` (default POST), ``headers``, and ``body`` (text) or ``json``;
optionally ``timeout`` (seconds, default 30) and ``max_response_bytes`` (at most the worker's cap).
Sends ``Idempotency-Key: <job id>`` so the receiver can drop a repeat of an at-least-once delivery.
2xx is success (result: status, body); anything else fails the attempt with the status. The
response is streamed and reading stops at the cap; it is asked for and kept without content
encoding (no decompression, so no decompression bomb). Redirects are not followed (they could
leave the allowlist); proxies from the environment are ignored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pgsched.builtins.guard import BadArgument, TaskRefused, job_cap
from pgsched.config import Settings, output_cap
from pgsched.context import current_job
from pgsched.errors import ConfigurationError, PgschedError
from pgsched.tasks import Task

if TYPE_CHECKING:
    import httpx

__all__ = ["HTTP_TASK", "HostAllowlist", "HttpPolicy", "HttpStatusError", "http_task"]

HTTP_TASK = "pgsched.http"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpStatusError(PgschedError):
    """The server answered with a non-2xx status."""

    def __init__(self, status: int, method: str, url: str, body: str) -> None:
        detail = f": {body[:300]}" if body else ""
        super().__init__(f"HTTP {status} from {method} {url}{detail}")
        self.status = status


def _entry(text: str) -> tuple[str, int | None]:
    entry = text.strip().lower().rstrip(".")
    if entry.startswith("["):  # [v6] or [v6]:port
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else None
        if rest and port is None:
            raise ConfigurationError(f"HTTP allowlist entry {text!r}: expected [address] or [address]:port")
    else:
        host, colon, port_text = entry.partition(":")
        port = port_text if colon else None
    if not host or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ConfigurationError(f"HTTP allowlist entry {text!r}: expected host, host:port or *.domain[:port]")
    return host.rstrip("."), int(port) if port is not None else None


@dataclass(frozen=True, slots=True)
class HostAllowlist:
    """Entries ``host``, ``host:port``, ``*.domain`` or ``*.domain:port`` (``[v6]`` for IPv6 addresses).
    An entry without a port allows only the default port of the URL's scheme (80 for http, 443 for https)."""

    entries: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> HostAllowlist:
        return cls(tuple(_entry(e) for e in entries if e.strip()))

    def allows(self, scheme: str, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        for name, allowed_port in self.entries:
            if port != (allowed_port if allowed_port is not None else _DEFAULT_PORTS[scheme]):
                continue
            if host == name or (name.startswith("*.") and host.endswith(name[1:])):
                return True
        return False


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """One worker's http rules: where jobs may call and how much of an answer they keep."""

    allowlist: HostAllowlist
    max_response_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpPolicy:
        cap = output_cap("PGSCHED_HTTP_MAX_RESPONSE_BYTES", settings.http_max_response_bytes)
        return cls(HostAllowlist.parse(settings.http_allow), cap)


def _check_url(url: Any, allowlist: HostAllowlist) -> None:
    if not isinstance(url, str):
        raise BadArgument("url", "must be a string")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise BadArgument("url", f"has an invalid port: {url!r}") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise BadArgument("url", f"must be an http or https URL with a host, got {url!r}")
    port = port or _DEFAULT_PORTS[parts.scheme]
    if not allowlist.allows(parts.scheme, parts.hostname, port):
        raise TaskRefused(
            f"{parts.hostname}:{port} is not in this worker's HTTP allowlist (start it with --http-allow HOST:PORT)"
        )


def _headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise BadArgument("headers", "must be an object of string values")
    return {k: v for k, v in headers.items() if k.lower() not in {"idempotency-key", "accept-encoding"}}


def http_task(policy: HttpPolicy) -> Task:
    async def http(**kwargs: Any) -> dict[str, Any]:
        return await request(policy, **kwargs)

    return Task(name=HTTP_TASK, func=http, queue="default")


def _validate(verb: str, body: Any, json: Any, timeout: Any) -> None:
    if verb not in _METHODS:
        raise BadArgument("method", f"must be one of {', '.join(sorted(_METHODS))}")
    if body is not None and json is not None:
        raise BadArgument("body", "give body or json, not both")
    if body is not None and not isinstance(body, str):
        raise BadArgument("body", "must be a string (use json for structured data)")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise BadArgument("timeout", "must be a positive number of seconds")


async def _read_capped(response: httpx.Response, cap: int) -> tuple[str, bool]:
    kept = bytearray()
    async for chunk in response.aiter_raw():
        room = cap - len(kept)
        kept += chunk[:room]
        if len(chunk) > room:
            return _decode(kept, response), True  # stop reading: the connection is closed, not drained
    return _decode(kept, response), False


def _decode(data: bytearray, response: httpx.Response) -> str:
    try:
        return data.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


async def request(
    policy: HttpPolicy,
    *,
    url: Any,
    method: Any = "POST",
    headers: Any = None,
    body: Any = None,
    json: Any = None,
    timeout: Any = 30.0,  # noqa: ASYNC109 - a job argument, read from the job's JSON
    max_response_bytes: Any = None,
) -> dict[str, Any]:
    """Send one request; returns ``{status, body, body_truncated}`` for a 2xx answer."""
    verb = str(method).upper()
    _validate(verb, body, json, timeout)
    cap = job_cap(max_response_bytes, policy.max_response_bytes, "max_response_bytes")
    _check_url(url, policy.allowlist)
    sent = {**_headers(headers), "Accept-Encoding": "identity"}
    with contextlib.suppress(LookupError):  # LookupError: called directly, outside a job
        sent["Idempotency-Key"] = str(current_job().id)
    import httpx  # here, not at module level: every worker registers this task, few run it (httpx costs ~35 ms to load)

    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        client.stream(verb, url, headers=sent, content=body, json=json) as response,
    ):
        text, truncated = await _read_capped(response, cap)
    if not 200 <= response.status_code < 300:
        raise HttpStatusError(response.status_code, verb, url, text)
    return {"status": response.status_code, "body": text, "body_truncated": truncated}
