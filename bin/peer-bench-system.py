"""pgsched adapter of the peer harness (../shared/peer-bench); bin/peer-bench copies it in as systems/pgsched.py.

Public interfaces only: ``pgsched migrate`` installs the schema, ``Pgsched.enqueue_many_async`` (calls
of ``BENCH_PGSCHED_CHUNK`` jobs, 1,000 like the peers) and ``enqueue_async`` enqueue, and the worker is
a real ``pgsched worker --concurrency C`` process, as deployed (the CLI's defaults otherwise: LISTEN/NOTIFY,
a leader candidate). Its no-op task writes each payload to stdout first thing; ``run_worker`` hands
every line to ``hooks.on_job`` in the harness's worker process, where the harness keeps its
bookkeeping (so a start is stamped a pipe hop late, never early). Two costs land on pgsched that
the in-process peers do not pay: the subprocess's start-up (interpreter, imports) falls inside
the harness's drain time, and its CPU is not in ``worker_cpu_ms_per_job`` (it lands in
``other_cpu``). ``BENCH_PGSCHED_WORKER=inprocess`` runs the same ``Worker`` and ``Scheduler`` that
``pgsched worker`` builds inside the harness's worker process instead, as the contract of
``systems/base.py`` describes; the task then calls ``hooks.on_job`` itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any

import hooks
import psycopg
from systems.base import BaseSystem

from pgsched import Pgsched
from pgsched.bench.workers import compile_package

CHUNK = int(os.environ.get("BENCH_PGSCHED_CHUNK", "1000"))
IN_PROCESS = os.environ.get("BENCH_PGSCHED_WORKER", "process") == "inprocess"
RELAY = "PGSCHED_PEER_RELAY"  # set in the worker subprocess: report starts on stdout
HARNESS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

app = Pgsched.from_env()  # the worker subprocess's application (its --dsn wins)


@app.task
async def noop(**payload: Any) -> None:
    if os.environ.get(RELAY):
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()
    else:
        hooks.on_job(payload)


def _pgsched(dsn: str, *argv: str) -> list[str]:
    return [sys.executable, "-m", "pgsched", "--dsn", dsn, "--log-level", "WARNING", *argv]


class System(BaseSystem):
    name = "pgsched"
    db = "bench_pgsched"

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self._app: Pgsched | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def describe(self, concurrency: int) -> str:
        return (f"pgsched worker --concurrency {concurrency} (a subprocess; CLI defaults: LISTEN/NOTIFY, leader "
                f"candidate); bulk: Pgsched.enqueue_many_async in calls of {CHUNK or 'all'}")  # fmt: skip

    async def setup_db(self) -> None:
        compile_package()  # the bytecode a deployed (pip-installed) package has, for the worker's cold start
        proc = await asyncio.create_subprocess_exec(*_pgsched(self.dsn, "migrate"))
        if await proc.wait() != 0:
            raise RuntimeError(f"pgsched migrate exited with status {proc.returncode}")

    async def open(self) -> None:
        self._app = Pgsched(self.dsn)

    async def close(self) -> None:
        if self._app is not None:
            await self._app.aclose()
            self._app = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def _client(self) -> Pgsched:
        if self._app is None:
            self._app = Pgsched(self.dsn)
        return self._app

    async def enqueue_bulk(self, n: int) -> None:
        step = CHUNK or n
        for start in range(0, n, step):
            items = [{"task": "noop", "args": {"i": i}} for i in range(start, min(n, start + step))]
            await self._client().enqueue_many_async(items)

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self._client().enqueue_async("noop", payload)

    async def run_worker(self, concurrency: int, stop: asyncio.Event) -> None:
        if IN_PROCESS:
            await self._run_in_process(concurrency, stop)
            return
        argv = _pgsched(self.dsn, "worker", "--app", "systems.pgsched:app", "--concurrency", str(concurrency))
        env = {**os.environ, RELAY: "1"}
        proc = subprocess.Popen(argv, cwd=HARNESS, env=env, stdout=subprocess.PIPE)  # noqa: ASYNC220 - returns once forked
        # A thread blocked on the pipe stamps each start as soon as its line arrives; a reader task would wait for a
        # turn of this process's event loop first (hooks.on_job is safe from any thread).
        relay = threading.Thread(target=self._relay, args=(proc.stdout,), daemon=True)
        relay.start()
        exited = asyncio.create_task(asyncio.to_thread(proc.wait))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            stopped.cancel()
            raise RuntimeError(f"pgsched worker exited with status {proc.returncode}")
        proc.send_signal(signal.SIGTERM)
        await exited
        await asyncio.to_thread(relay.join)

    async def _run_in_process(self, concurrency: int, stop: asyncio.Event) -> None:
        from pgsched import Settings
        from pgsched.scheduler import Scheduler
        from pgsched.worker import Worker, WorkerConfig

        settings = Settings.from_env(dsn=self.dsn)
        worker = Worker(app.tasks, settings, WorkerConfig(queues=("default",), concurrency=concurrency))
        scheduler = Scheduler(settings, worker_id=lambda: worker.worker_id)
        async with asyncio.TaskGroup() as group:
            group.create_task(worker.run())
            group.create_task(scheduler.run())
            await stop.wait()
            worker.stop()
            scheduler.stop()

    @staticmethod
    def _relay(stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for line in stream:
            if line.startswith(b"{"):
                hooks.on_job(json.loads(line))

    async def count_done(self) -> int:
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        cur = await self._conn.execute("SELECT count(*) FROM pgsched.jobs WHERE state = 'succeeded'")
        row = await cur.fetchone()
        return int(row[0]) if row else 0
