"""An example FastAPI application using pgsched (the README's FastAPI section is taken from it).

Orders are inserted and their shipping job enqueued in one transaction of the request: either both
exist or neither does. The pgsched API and dashboard are mounted under /pgsched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from pgsched import Pgsched, Settings
from pgsched.contrib.starlette import mount

jobs = Pgsched()


@jobs.task
async def ship_order(order_id: int) -> str:
    return f"order {order_id} shipped"


class Order(BaseModel):
    item: str
    reject: bool = False  # the example's way to make the request fail after enqueueing


def create_web_app(settings: Settings) -> FastAPI:
    pool = AsyncConnectionPool(settings.require_dsn(), open=False)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        yield
        await pool.close()

    web = FastAPI(lifespan=lifespan)
    mount(web, settings, path="/pgsched")  # REST API + dashboard at /pgsched/

    @web.post("/orders", status_code=201)
    async def place_order(order: Order) -> dict[str, int]:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute("INSERT INTO orders (item) VALUES (%s) RETURNING id", [order.item])
            row = await cur.fetchone()
            assert row is not None
            job_id = await ship_order.enqueue_async(order_id=row[0], conn=conn)  # same transaction
            if order.reject:
                raise HTTPException(409, "rejected")  # rolls back the order and its job
        return {"order": row[0], "job": job_id}

    return web
