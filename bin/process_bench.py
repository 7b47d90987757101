"""CPU-bound jobs on threads vs the process executor, through a real in-process worker and PostgreSQL.

Run it with ``bin/process-bench [--dsn DSN] [--jobs 40] [--work 2000000] [--runs 3]``. It creates and drops
scratch databases of its own. Each run enqueues ``--jobs`` jobs of ``pgsched.bench.tasks.cpu_work`` (pure
Python, holds the GIL) to a running worker with ``--concurrency 2`` (and 2 process children for the process
variant, started by two tiny jobs first; ``--cold`` times their start too), and times the drain from the
enqueue to the last job succeeded. Figures are medians; on a shared, busy machine read them as a ratio, and
check the machine has two idle cores (``uptime``): with other load, processes cannot get a second core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import psycopg

from pgsched import Pgsched, Settings
from pgsched.bench.scratch import Databases, admin_dsn
from pgsched.bench.tasks import cpu_work
from pgsched.worker import Worker, WorkerConfig


def _app(dsn: str) -> Pgsched:
    app = Pgsched(settings=Settings(dsn=dsn))
    app.task(name="cpu_thread", executor="thread")(cpu_work)
    app.task(name="cpu_process", executor="process")(cpu_work)
    return app


async def _all_done(dsn: str, running: asyncio.Task[None]) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            cur = await conn.execute("SELECT count(*) FROM pgsched.jobs WHERE state <> 'succeeded'")
            row = await cur.fetchone()
            if row is not None and row[0] == 0:
                return
            if running.done():
                running.result()
            await asyncio.sleep(0.02)


async def _drain(dsn: str, task: str, jobs: int, work: int, *, warm: bool) -> float:
    """Seconds from the enqueue of the batch to its last success; ``warm``: two tiny jobs first start the children."""
    app = _app(dsn)
    worker = Worker(app.tasks, Settings(dsn=dsn), WorkerConfig(concurrency=2, processes=2))
    running = asyncio.create_task(worker.run())
    if warm:
        await app.enqueue_many_async([{"task": task, "args": {"n": 1}} for _ in range(2)])
        await _all_done(dsn, running)
    started = time.perf_counter()
    await app.enqueue_many_async([{"task": task, "args": {"n": work}} for _ in range(jobs)])
    await _all_done(dsn, running)
    elapsed = time.perf_counter() - started
    worker.stop()
    worker.stop()
    await running
    await app.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get("PGSCHED_DSN", "host=127.0.0.1 user=postgres"))
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--work", type=int, default=2_000_000, help="loop iterations per job")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="count the children's start inside the timed span")
    ns = parser.parse_args()
    databases = Databases(admin_dsn(ns.dsn), prefix="pgsched_pbench")
    times: dict[str, list[float]] = {"cpu_thread": [], "cpu_process": []}
    try:
        for run in range(ns.runs):
            for task, taken in times.items():
                dsn = databases.clone(f"{task}_{run}")
                taken.append(asyncio.run(_drain(dsn, task, ns.jobs, ns.work, warm=not ns.cold)))
                databases.drop(dsn)
    finally:
        databases.drop_all()
    threads, processes = (statistics.median(times[t]) for t in ("cpu_thread", "cpu_process"))
    print(f"{ns.jobs} CPU-bound jobs ({ns.work:,} iterations each), concurrency 2, median of {ns.runs} runs")
    for label, median, task in (("threads", threads, "cpu_thread"), ("processes", processes, "cpu_process")):
        runs = [round(t, 2) for t in times[task]]
        print(f"  {label:<10}: {median:6.2f} s  ({ns.jobs / median:5.2f} jobs/s)  runs {runs}")
    start = "started cold inside the timed span" if ns.cold else "started (two tiny jobs) before the timed span"
    print(f"  speed-up  : {threads / processes:.2f}x (2 process children, {start})")


if __name__ == "__main__":
    main()
