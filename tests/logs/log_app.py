"""Tasks for the log-format tests: one logs from inside its job, one fails."""

from __future__ import annotations

import logging

from pgsched import Pgsched

app = Pgsched.from_env()
log = logging.getLogger("shop.tasks")


@app.task(queue="mail")
def greet(name: str) -> str:
    log.info("greeting %s", name, extra={"event": "greeted"})
    return f"hello {name}"


@app.task(max_attempts=1)
def broken() -> None:
    raise ValueError("broken on purpose")
