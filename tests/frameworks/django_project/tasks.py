"""The example project's pgsched tasks (``PGSCHED_APP`` points here)."""

from __future__ import annotations

from django.db import connection

from pgsched import Pgsched

app = Pgsched()  # no DSN of its own: enqueue uses Django's connection, the worker DATABASES


@app.task
def ship_order(order_id: int) -> str:
    with connection.cursor() as cursor:  # a task may use Django's database too
        cursor.execute("UPDATE orders SET shipped = true WHERE id = %s", [order_id])
    return f"order {order_id} shipped"
