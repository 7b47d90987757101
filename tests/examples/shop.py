"""An application as a user writes it: a module-level app, tasks that enqueue other tasks."""

from __future__ import annotations

from pgsched import Pgsched, RetryPolicy
from pgsched.context import current_job

app = Pgsched()  # the DSN comes later: from the environment in production, from a fixture in tests


@app.task(queue="orders")
def place_order(order_id: int, items: list[str]) -> dict[str, object]:
    """Confirms an order and asks for a receipt (a second job)."""
    send_receipt.enqueue(order_id=order_id)
    return {"order": order_id, "count": len(items)}


@app.task(queue="emails")
async def send_receipt(order_id: int) -> str:
    return f"receipt {order_id} (job {current_job().id})"


@app.task(max_attempts=2, retry=RetryPolicy(base_seconds=60, jitter=0.0))
def charge_card(cents: int) -> int:
    if cents <= 0:
        raise ValueError(f"cannot charge {cents} cents")
    return cents
