"""Tests wait on conditions, never on bare sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, timeout: float = 5.0, interval: float = 0.02, message: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s {message}".strip())
        time.sleep(interval)


async def await_until(
    predicate: Callable[[], Awaitable[T]], *, timeout: float = 5.0, interval: float = 0.02, message: str = ""
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s {message}".strip())
        await asyncio.sleep(interval)
