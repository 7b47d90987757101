"""Tasks with declared defaults, for the registry tests (in process and in real `pgsched worker` processes)."""

from __future__ import annotations

from pgsched import Pgsched

app = Pgsched.from_env()


@app.task(queue="emails", max_attempts=1, priority=7, timeout=30)
async def send_welcome(to: str = "") -> str:
    """Send the welcome mail.

    More lines that the registry does not publish."""
    return to


@app.task(queue="late")
async def later_task() -> str:
    return "ran"
