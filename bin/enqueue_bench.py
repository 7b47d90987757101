"""Enqueue costs as users see them: one enqueue, Redis on vs off (Python and REST), a blackholed Redis,
and bulk enqueue (enqueue_many in chunks vs one COPY vs INSERT ... SELECT).

Run it with ``bin/enqueue-bench [--dsn DSN] [--redis URL]``. It creates and drops a scratch database
of its own and uses a Redis key namespace of its own (it never flushes Redis). Figures are medians
of ``--runs`` runs; on a shared, busy machine read them as ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import uvicorn

from pgsched import Settings
from pgsched.api import create_app
from pgsched.client import Client
from pgsched.migrate import Migrator

TOKEN = "enqueue-bench-token-0123456789"
BATCH = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summary(samples: list[float]) -> str:
    s = sorted(samples)
    total = sum(s)
    return (
        f"p50 {statistics.median(s) * 1000:.3f} ms  p99 {s[int(len(s) * 0.99)] * 1000:.3f} ms  {len(s) / total:,.0f}/s"
    )


def timed(call: Callable[[int], Any], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - t0)
    return out


@contextlib.contextmanager
def scratch_db(admin_dsn: str) -> Iterator[str]:
    name = f"pgsched_enqbench_{os.getpid()}"
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    try:
        Migrator(dsn).migrate()
        yield dsn
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextlib.contextmanager
def api(settings: Settings) -> Iterator[httpx.Client]:
    port = free_port()
    config = uvicorn.Config(create_app(settings.with_(api_token=TOKEN)), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(30)


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """A TCP server that accepts and reads but never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for conn in held:
            conn.close()


def single(settings: Settings, n: int) -> None:
    client = Client(settings)

    async def run() -> list[float]:
        for i in range(200):
            await client.enqueue_async("t", {"n": i})
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            await client.enqueue_async("t", {"n": i})
            out.append(time.perf_counter() - t0)
        await client.aclose()
        return out

    print(f"  enqueue_async, no key:          {summary(asyncio.run(run()))}")
    client = Client(settings)
    timed(lambda i: client.enqueue("t", {"n": i}), 200)
    print(f"  enqueue (sync), no key:         {summary(timed(lambda i: client.enqueue('t', {'n': i}), n))}")
    client.close()


def keyed(settings: Settings, redis_url: str, n: int) -> None:
    tag = uuid.uuid4().hex[:8]
    for label, s in (("off", settings), ("on ", settings.with_(redis_url=redis_url, redis_namespace=f"bench-{tag}"))):
        client = Client(s)
        fresh = timed(lambda i, c=client, lb=label: c.enqueue("t", run_key=f"{tag}-{lb}-{i}"), n)
        again = timed(lambda i, c=client, lb=label: c.enqueue("t", run_key=f"{tag}-{lb}-{i}"), n)
        print(f"  python enqueue, Redis {label}, new keys:      {summary(fresh)}")
        print(f"  python enqueue, Redis {label}, taken keys:    {summary(again)}")

        def many(i: int, c: Client = client, lb: str = label) -> None:
            c.enqueue_many([{"task": "t", "run_key": f"{tag}-{lb}-m{i}-{k}"} for k in range(BATCH)])

        fresh = timed(many, max(10, n // BATCH))
        again = timed(many, max(10, n // BATCH))
        print(f"  python enqueue_many x{BATCH}, Redis {label}, new keys:   {summary(fresh)} (calls)")
        print(f"  python enqueue_many x{BATCH}, Redis {label}, taken keys: {summary(again)} (calls)")
        with api(s) as http:
            timed(lambda i, h=http: h.post("/jobs", json={"task": "t", "args": {"n": i}}), 100)
            fresh = timed(
                lambda i, h=http, lb=label: h.post("/jobs", json={"task": "t", "run_key": f"r{tag}{lb}{i}"}), n
            )
            again = timed(
                lambda i, h=http, lb=label: h.post("/jobs", json={"task": "t", "run_key": f"r{tag}{lb}{i}"}), n
            )
        print(f"  REST POST /jobs, Redis {label}, new keys:     {summary(fresh)}")
        print(f"  REST POST /jobs, Redis {label}, taken keys:   {summary(again)}")
        client.close()


def hung_redis(settings: Settings, n: int) -> None:
    """The same keyed calls with no Redis and with a blackholed one, alternating blocks of 50."""
    samples: dict[str, list[float]] = {"no Redis": [], "blackholed": []}
    with blackhole() as url:
        clients = {"no Redis": Client(settings), "blackholed": Client(settings.with_(redis_url=url))}
        for block in range(0, n, 50):
            for name, client in clients.items():
                calls = timed(
                    lambda i, c=client, b=block, t=name[0]: c.enqueue_many([{"task": "t", "run_key": f"{t}{b}-{i}"}]),
                    50,
                )
                samples[name].extend(calls)
        for client in clients.values():
            client.close()
    for name, values in samples.items():
        print(f"  enqueue_many x1 with a run key, {name}: {summary(values)}")


def bulk(settings: Settings, rows: int, runs: int) -> None:
    items = [{"task": "t", "args": {"n": i, "to": "someone@example.com"}} for i in range(rows)]
    rates: dict[str, list[float]] = {"chunked": [], "copy": [], "select": []}
    client = Client(settings)
    with psycopg.connect(settings.require_dsn(), autocommit=True) as conn:
        for _ in range(runs):
            for name, samples in rates.items():
                conn.execute("TRUNCATE pgsched.jobs")
                conn.execute("CHECKPOINT")
                t0 = time.perf_counter()
                if name == "chunked":
                    for start in range(0, rows, 1000):
                        client.enqueue_many(items[start : start + 1000])
                elif name == "copy":
                    client.enqueue_many(items)
                else:
                    conn.execute(
                        "INSERT INTO pgsched.jobs (task, args) SELECT 't', jsonb_build_object('n', i, 'to',"
                        " 'someone@example.com') FROM generate_series(1, %s) i",
                        [rows],
                    )
                samples.append(rows / (time.perf_counter() - t0))
    client.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"  INSERT ... SELECT:               {med['select']:,.0f} jobs/s")
    copy, chunked = med["copy"], med["chunked"]
    print(f"  one enqueue_many of {rows}:      {copy:,.0f} jobs/s ({copy / med['select']:.0%} of INSERT ... SELECT)")
    print(f"  enqueue_many in calls of 1,000:  {chunked:,.0f} jobs/s ({chunked / copy:.0%} of one COPY)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PGSCHED_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("-n", type=int, default=2000, help="calls per single-enqueue figure")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="synchronous_commit=off in the scratch database: shows client overhead without the WAL flush",
    )
    parser.add_argument("--only", choices=["single", "keyed", "hung", "bulk"], action="append")
    args = parser.parse_args()
    with scratch_db(args.dsn) as dsn:
        if args.async_commit:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("SELECT set_config('synchronous_commit', 'off', false)")
                c.execute(f"ALTER DATABASE {c.info.dbname} SET synchronous_commit = off")
        settings = Settings(dsn=dsn)
        parts = args.only or ["single", "keyed", "hung", "bulk"]
        if "single" in parts:
            print("single enqueue (warm client):")
            single(settings, args.n)
        if "keyed" in parts:
            print("run-key enqueue, Redis off vs on:")
            keyed(settings, args.redis, args.n)
        if "hung" in parts:
            print("blackholed Redis:")
            hung_redis(settings, min(args.n, 1000))
        if "bulk" in parts:
            print(f"bulk enqueue of {args.rows} jobs (median of {args.runs}):")
            bulk(settings, args.rows, args.runs)


if __name__ == "__main__":
    main()
