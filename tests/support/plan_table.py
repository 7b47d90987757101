"""A realistic pgsched.jobs for plan tests, and the statistics states a plan can be made under: a backlog in the
default queue and in three limited ones (a concurrency limit, a rate limit, concurrency keys), a running set of
WORKERS workers, recent history. What ANALYZE saw is the state; the table is then topped up without one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from pgsched.queries import query
from tests.support.plans import report_plans

QUEUED = 10_000  # per backlogged queue
RUNNING = 2_000  # of WORKERS workers: worker 1 holds one batch of them
WORKERS = 20
FINISHED = 3_000
BATCH = 100
KEYS = 2_000  # half the keyed queue's backlog spreads over this many concurrency keys (limit 1 each)
CAPPED_RUNNING = 50  # running jobs of the capped queue (its limit: LIMITS)
KEYED_RUNNING = 200  # running jobs of the keyed queue, each holding a key of its backlog
CHURNED = 50_000  # jobs that ran since jobs_running was last vacuumed (churn): one in STILL_RUNNING still runs
STILL_RUNNING = 25
HISTORY = 20_000  # finished jobs in the time partitions of jobs_done (fill_history)
RARE = 300  # one finished job in this many is of the rare queue and task, carries a tag, meta and a run key
# The limited queues: each gets a backlog of its own beside the default queue's. Room for a whole batch in each.
LIMITS = {
    "capped": {"concurrency": CAPPED_RUNNING + 2 * BATCH},
    "rated": {"rate_limit": 1_000_000, "rate_burst": 10 * BATCH},
    "keyed": {},  # not limited itself: its keyed jobs are
}
Conn = psycopg.Connection[Any]


def count(conn: Conn, state: str, queue: str | None = None) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pgsched.jobs WHERE state = %s::pgsched.job_state AND queue = coalesce(%s, queue)",
        (state, queue),
    ).fetchone()
    return int(row[0]) if row else 0


def set_limits(conn: Conn) -> None:
    """The limited queues' rows in pgsched.queues (present in every statistics state)."""
    for name, limits in LIMITS.items():
        conn.execute(
            "INSERT INTO pgsched.queues (name, concurrency, rate_limit, rate_burst) VALUES (%s, %s, %s, %s)",
            (name, limits.get("concurrency"), limits.get("rate_limit"), limits.get("rate_burst")),
        )


def load(conn: Conn, queued: int = QUEUED, running: int = RUNNING, finished: int = FINISHED) -> None:
    """Top the table up to this many queued jobs per backlogged queue, running and (recently) succeeded jobs."""
    for queue in ("default", *LIMITS):
        conn.execute(
            "INSERT INTO pgsched.jobs (task, queue, concurrency_key)"
            " SELECT 'noop', %s::text, CASE WHEN %s::text = 'keyed' AND g %% 2 = 0 THEN 'k' || g / 2 %% %s::int END"
            " FROM generate_series(1, %s) g",
            (queue, queue, KEYS, max(0, queued - count(conn, "queued", queue))),
        )
    conn.execute(  # the first running jobs are the limited queues': CAPPED_RUNNING capped, then KEYED_RUNNING keyed
        "INSERT INTO pgsched.jobs (task, queue, concurrency_key, state, attempt, worker_id, started_at, lease)"
        " SELECT 'noop', q.queue, CASE WHEN q.queue = 'keyed' THEN 'k' || g END, 'running', 1, 1 + g %% %s::int,"
        "        now(), g"
        "   FROM generate_series(%s::int, %s::int) g"
        "  CROSS JOIN LATERAL (SELECT CASE WHEN g <= %s::int THEN 'capped' WHEN g <= %s::int THEN 'keyed'"
        "                                  ELSE 'default' END AS queue) q",
        (WORKERS, count(conn, "running") + 1, running, CAPPED_RUNNING, CAPPED_RUNNING + KEYED_RUNNING),
    )
    conn.execute(
        "INSERT INTO pgsched.jobs (task, queue, state, attempt, finished_at)"
        " SELECT 'noop', 'default', 'succeeded', 1, now() FROM generate_series(1, %s)",
        (max(0, finished - count(conn, "succeeded")),),
    )
    if count(conn, "queued", "default") < QUEUED // 4:
        return
    conn.execute(  # keyed jobs of another queue: the claim's probe for them must not read them all
        "INSERT INTO pgsched.jobs (task, queue, concurrency_key) SELECT 'noop', 'other', 'k' || g"
        " FROM generate_series(1, %s) g WHERE NOT EXISTS (SELECT 1 FROM pgsched.jobs WHERE queue = 'other')",
        (QUEUED // 4,),
    )


def churn(conn: Conn, jobs: int = CHURNED) -> None:
    """Jobs that ran and finished since the last vacuum of jobs_running, as a soak leaves them between autovacuums: each
    ran under one of the WORKERS (an entry in jobs_running_idx) and all but one in STILL_RUNNING moved to jobs_done as a
    finish does, leaving a dead row in jobs_running and a dead entry in each of its indexes, none yet marked dead by a
    scan; the jobs still running lie among them, as in a soak. Run it on a connection of its own, as the workers'
    finishes are: later scans in the session that committed the moves did not mark their entries dead (PostgreSQL 15),
    though every other session's did."""
    conn.execute(
        "INSERT INTO pgsched.jobs (task, queue, state, attempt, worker_id, started_at, lease)"
        " SELECT 'churned', 'default', 'running', 1, 1 + g %% %s::int, now(), pgsched.new_lease()"
        "   FROM generate_series(1, %s::int) g",
        (WORKERS, jobs),
    )
    conn.execute(
        "UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now(), lease = NULL"
        " WHERE task = 'churned' AND state = 'running' AND id / %s::int %% %s::int <> 0",
        (WORKERS, STILL_RUNNING),
    )


def fill_history(conn: Conn, finished: int = HISTORY) -> None:
    """Top the history up to ``finished`` jobs, finished over the last day in the queues of ``load`` (one in RARE of
    the queue and task "rare", labelled and keyed), into the day partitions of jobs_done their retention picks
    (succeeded 1 day, cancelled 3, dead 7: a day partition of each state apart, 9 made rather than the defaults' 31,
    which took 5 s), as the finish routes them; 90 % succeeded, 8 % dead, 2 % cancelled (as ``pgsched bench
    history``)."""
    conn.execute(
        "UPDATE pgsched.retention SET keep = CASE state WHEN 'dead' THEN interval '7 days'"
        " WHEN 'cancelled' THEN interval '3 days' ELSE keep END WHERE queue = '*'"
    )
    conn.execute("SELECT pgsched.history_maintain(interval '1 day', now())")
    conn.execute(
        "INSERT INTO pgsched.jobs (task, queue, state, attempt, max_attempts, priority, run_at, started_at,"
        "                          finished_at, purge_at, tags, meta, run_key, run_key_scope)"
        " SELECT CASE WHEN r THEN 'rare' ELSE 'noop' END, CASE WHEN r THEN 'rare' ELSE q.queue END, s.state, 1, 1, 0,"
        "        f.at - interval '2 s', f.at - interval '1 s', f.at, f.at + k.keep,"
        "        CASE WHEN r THEN '{blue}'::text[] ELSE '{}' END,"
        "        CASE WHEN r THEN '{\"tenant\": 7}'::jsonb ELSE '{}' END,"
        "        CASE WHEN r THEN 'history-' || g END, CASE WHEN r THEN 'retention' END"
        "   FROM generate_series(1, %s::int) g"
        "  CROSS JOIN LATERAL (SELECT g %% %s::int = 0 AS r,"
        "                             now() - (1 - g::float8 / %s::int) * interval '1 day' AS at) f"
        "  CROSS JOIN LATERAL (SELECT (ARRAY['default', 'capped', 'rated', 'keyed'])[1 + g %% 4] AS queue) q"
        "  CROSS JOIN LATERAL (SELECT CASE WHEN g %% 50 = 0 THEN 'cancelled' WHEN g %% 12 = 0 THEN 'dead'"
        "                                  ELSE 'succeeded' END::pgsched.job_state AS state) s"
        "  CROSS JOIN LATERAL (SELECT t.keep FROM pgsched.retention t WHERE t.queue = '*' AND t.state = s.state) k",
        (max(0, finished - _history(conn)), RARE, finished),
    )


def _history(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM pgsched.jobs_done WHERE purge_at IS NOT NULL").fetchone()
    return int(row[0]) if row else 0


def analyze(conn: Conn) -> None:
    conn.execute("VACUUM ANALYZE pgsched.jobs")


def _finished_only(conn: Conn) -> None:
    load(conn, 0, 0, QUEUED + RUNNING)
    analyze(conn)


def _drained(keep: int) -> Callable[[Conn], None]:
    """A large backlog and a large running set drained to their newest ``keep`` jobs, then vacuumed and analyzed: their
    pages stay (jobs_queued and jobs_running keep them, migrations 0033 and 0046).
    - A handful kept: the planner expects almost no rows per page until the next ANALYZE, however many queue up
      meanwhile (a soak at 5,000 jobs/s: every claim sorted the whole backlog for a minute).
    - None kept: VACUUM (or ANALYZE) counts no live row, so reltuples is 0 over thousands of pages and the planner
      expects one row from any read of the live jobs (a soak at 4,000 jobs/s: after each autovacuum of jobs_live the
      finish's kept plan rescanned its whole batch once per job, 400 ms a flush, for about a minute)."""

    def drain(conn: Conn) -> None:
        conn.execute(
            "INSERT INTO pgsched.jobs (task, queue) SELECT 'noop', 'default' FROM generate_series(1, %s)", (3 * QUEUED,)
        )
        conn.execute(
            "INSERT INTO pgsched.jobs (task, queue, state, attempt, worker_id, started_at, lease)"
            " SELECT 'noop', 'default', 'running', 1, 1, now(), g FROM generate_series(1, %s) g",
            (3 * RUNNING,),
        )
        for table in ("jobs_queued", "jobs_running"):
            conn.execute(
                f"DELETE FROM pgsched.{table}"
                f" WHERE id NOT IN (SELECT id FROM pgsched.{table} ORDER BY id DESC LIMIT %s)",
                (keep,),
            )
        analyze(conn)

    return drain


# Statistics states: what ANALYZE saw when the statement was planned (then the table is topped up).
STATES: dict[str, Callable[[Conn], object]] = {
    "no statistics": lambda conn: None,
    "analyzed empty": analyze,
    "analyzed with the queued backlog": lambda conn: (load(conn, QUEUED, 0, 0), analyze(conn)),
    "analyzed mid-drain": lambda conn: (load(conn), analyze(conn)),
    "analyzed all finished": _finished_only,
    "analyzed nearly empty after a drain": _drained(50),
    "vacuumed empty after a drain": _drained(0),
    "stale after growing 100x": lambda conn: (
        load(conn, QUEUED // 100, RUNNING // 100, FINISHED // 100),
        analyze(conn),
    ),
}


def start_session(conn: Conn, stats: str) -> None:
    """Register the workers and the limited queues, put the table in the statistics state ``stats``, and have the
    session report every plan it runs."""
    conn.execute(
        "INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE"
        " SELECT g, 'test', g FROM generate_series(1, %s) g",
        (WORKERS,),
    )
    set_limits(conn)
    STATES[stats](conn)
    report_plans(conn)


# Each statistics state is checked with the plans a worker keeps and with plans made for each call's parameters.
PLAN_MODES = ("generic", "custom")


@contextlib.contextmanager
def plan_sessions(dsn: str, stats: str, *, worker: bool) -> Iterator[dict[str, Conn]]:
    """A session per plan mode (PLAN_MODES) on one table, put in the statistics state ``stats`` once (start_session).
    Each reports its plans and forces its mode's plans; with ``worker``, it is first set up as a worker's session.
    Statements checked through explain_executed roll back, so each session sees the same table."""
    with contextlib.ExitStack() as stack:
        sessions = {
            mode: stack.enter_context(psycopg.connect(dsn, autocommit=True, prepare_threshold=None))
            for mode in PLAN_MODES
        }
        first, *others = sessions.values()
        start_session(first, stats)
        for conn in others:
            report_plans(conn)
        for mode, conn in sessions.items():
            if worker:
                conn.execute(query("worker_session_setup"))
            conn.execute(f"SET plan_cache_mode = force_{mode}_plan")
        yield sessions
