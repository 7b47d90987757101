"""Read deadlines, so slow clients cost nothing: a connection must finish each request's headers
within ``header_timeout`` seconds (uvicorn has no such timeout: a connection sending half a
request line stays open forever), and a request's body must arrive within ``body_timeout``.

Interface layer. ``header_deadline_protocol`` builds uvicorn's h11 protocol with the header timer;
``BodyDeadlineMiddleware`` answers 408 when the body is too slow. Neither touches the database.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from pgsched.api.errors import ApiError

__all__ = ["BodyDeadlineMiddleware", "header_deadline_protocol"]


class _HeaderDeadlineH11Protocol(H11Protocol):
    """H11Protocol that closes a connection whose next request's headers are not complete in time."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _armed_cycle: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # bytes of a new request: its headers are now on the clock
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._armed_cycle:
            self._disarm()  # the request's headers are complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._armed_cycle = self.cycle
            self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def header_deadline_protocol(header_timeout: float) -> type[H11Protocol]:
    """uvicorn's ``http=`` protocol class with a header read deadline of ``header_timeout`` seconds."""
    return type("HeaderDeadlineH11Protocol", (_HeaderDeadlineH11Protocol,), {"header_timeout": header_timeout})


class BodyDeadlineMiddleware:
    """Answer 408 (and close) when a request body has not fully arrived ``body_timeout`` seconds after
    its headers; a body that trickles in one byte at a time cannot hold a connection open."""

    def __init__(self, app: ASGIApp, *, body_timeout: float) -> None:
        self.app = app
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.body_timeout
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _too_slow(self.body_timeout) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)  # the 408 is raised where the body is read


def _too_slow(limit: float) -> ApiError:
    message = f"the request body did not arrive within {limit:g} seconds"
    return ApiError(408, "request_timeout", message, headers={"Connection": "close"})
