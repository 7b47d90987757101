"""pgsched.service.run_services: a service that fails with an error nobody expected (a bug) says where in the log,
whatever the log level; a PgschedError (its own message, printed as one line by the CLI) is not logged again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pgsched.errors import DatabaseUnavailable
from pgsched.service import run_services


class _Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def run(self) -> None:
        await asyncio.sleep(0)
        raise self.error

    def stop(self) -> None:
        pass


class _Waiting:
    def __init__(self) -> None:
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


async def test_a_service_failing_with_a_bug_logs_its_traceback_and_stops_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="pgsched.service")
    waiting = _Waiting()
    with pytest.raises(ExceptionGroup) as raised:
        await run_services([_Failing(RuntimeError("out of order")), waiting])
    assert [type(e) for e in raised.value.exceptions] == [RuntimeError]
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "service_failed"]
    assert record.getMessage() == "_Failing failed: the process stops"
    assert record.exc_info is not None and str(record.exc_info[1]) == "out of order"


async def test_a_service_failing_with_a_pgsched_error_leaves_the_message_to_its_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pgsched.service")
    with pytest.raises(ExceptionGroup):
        await run_services([_Failing(DatabaseUnavailable("no server"))])
    assert not [r for r in caplog.records if getattr(r, "event", None) == "service_failed"]
