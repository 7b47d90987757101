"""The reads behind the API and the dashboard stay cheap whatever the statistics said when they were planned.

Every request of the API and every poll of the dashboard runs one of these statements on a connection of the API's pool,
whose statements psycopg prepares at their fifth use: PostgreSQL then keeps a generic plan when it looks no dearer than
the custom ones, and JIT compiles any plan it thinks costly (the API's sessions leave jit on). Here each statement is
planned under every statistics state of tests/support/plan_table.py (a generic plan made then and kept, and custom plans
made from those statistics), then run on a realistic table: a backlog in jobs_queued, a running set in jobs_running, a
day of finished jobs in the time partitions of jobs_done. The rows each visits (and the pairs its join filters compared)
must stay within a small multiple of the page it returns, never the backlog or the history; the statements not there yet
are in OPEN, with what they read instead (they are run too, and must not be JIT-compiled).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgsched.admin_store import QUEUE_COUNT_CAP
from pgsched.api.dashboard.api import RETRYING_CAP
from tests.support.plan_table import HISTORY, RARE, RUNNING, STATES, WORKERS, fill_history, load, set_limits
from tests.support.plans import explain_executed, jit_compiled, prepare, report_plans, rows_visited

PAGE = 50  # the API's default page size: its store reads one more row, to know whether a next page exists
PAGE_BOUND = 4 * (PAGE + 1)
# The running set is bounded by the workers' concurrency, not by the backlog or the history: the running lists read it
# once through jobs_running_idx and sort it (as the reaper does), the other plans twice.
RUNNING_BOUND = 2 * RUNNING + PAGE_BOUND
# GET /jobs?state=running reads the running set once (jobs_running_idx) and sorts it; through the live id index from
# the top it read the queued jobs with higher ids too (2,851 rows here; any backlog enqueued after the running jobs).
RUNNING_LIST_BOUND = RUNNING + PAGE_BOUND
# The queue counts read at most cap + 1 queued jobs of each kind per queue (6 queues here) and cap + 1 finished jobs
# per state, and the running set (migration 0035).
QUEUES_BOUND = 6 * 2 * (QUEUE_COUNT_CAP + 1) + 3 * (QUEUE_COUNT_CAP + 1) + RUNNING
# The labelled lists read every job holding the label (a GIN index gives no order: here the history's rare jobs, each
# counted in the label index, its partition and once more if on the page), never a job without one.
LABELLED_BOUND = 3 * (HISTORY // RARE) + PAGE_BOUND
RETRYING = 300  # queued jobs that failed before, due in an hour (the retrying and scheduled pages)
# request -> (statement, its parameters beyond _DEFAULTS, the rows it may visit)
CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    "GET /jobs": ("job_list", {}, PAGE_BOUND),
    "GET /jobs, next page": ("job_list", {"before_id": "$history"}, PAGE_BOUND),
    "GET /jobs?state=queued": ("job_list", {"state": "queued"}, PAGE_BOUND),
    "GET /jobs?state=running": ("job_list", {"state": "running"}, RUNNING_LIST_BOUND),
    "GET /jobs?state=succeeded": ("job_list", {"state": "succeeded"}, PAGE_BOUND),
    "GET /jobs?state=cancelled": ("job_list", {"state": "cancelled"}, PAGE_BOUND),
    "GET /dead": ("job_list", {"state": "dead"}, PAGE_BOUND),
    "GET /dead, next page": ("job_list", {"state": "dead", "before_id": "$history"}, PAGE_BOUND),
    "GET /jobs?queue=capped": ("job_list", {"queue": "capped"}, PAGE_BOUND),
    "GET /jobs?task=rare": ("job_list", {"task": "rare"}, PAGE_BOUND),
    "GET /jobs?tags=blue": ("job_list_labelled", {"tags": ["blue"]}, LABELLED_BOUND),
    "GET /jobs?meta=tenant": ("job_list_labelled", {"meta": '{"tenant": 7}'}, LABELLED_BOUND),
    "GET /jobs/{id} finished": ("job_get", {"id": "$history"}, 4),
    "GET /jobs/{id} running": ("job_get", {"id": "$running"}, 4),
    "GET /schedules/{name}/runs": ("schedule_runs", {"name": "nightly"}, PAGE_BOUND),
    "GET /queues": ("queue_counts_list", {"cap": QUEUE_COUNT_CAP}, QUEUES_BOUND),
    "GET /workers": ("cluster_list", {}, 0),
    "GET /health": ("health_check", {}, 0),
    "GET /metrics totals": ("job_totals_list", {}, 0),
    "GET /metrics buckets": ("job_total_buckets_list", {}, 0),
    "dashboard all": ("dashboard_jobs_by_id", {}, PAGE_BOUND),
    "dashboard all, next page": ("dashboard_jobs_by_id", {"before_id": "$history"}, PAGE_BOUND),
    "dashboard args search": ("dashboard_jobs_by_id", {"args": "{}", "floor_id": "$floor"}, PAGE_BOUND),
    "dashboard succeeded": ("dashboard_jobs_finished", {"state": "succeeded"}, PAGE_BOUND),
    "dashboard dead": ("dashboard_jobs_finished", {"state": "dead"}, PAGE_BOUND),
    "dashboard dead, next page": (
        "dashboard_jobs_finished",
        {"state": "dead", "after_at": "$finished", "after_id": "$history"},
        PAGE_BOUND,
    ),
    "dashboard available": ("dashboard_jobs_waiting", {"due": True}, PAGE_BOUND),
    # The jobs due later (here those queued again after a failure, as jobs_retrying_idx holds only these): read whole
    # and sorted on empty statistics.
    "dashboard scheduled": ("dashboard_jobs_waiting", {"later": True}, 2 * RETRYING + PAGE_BOUND),
    "dashboard retrying": ("dashboard_jobs_retrying", {}, 2 * RETRYING + PAGE_BOUND),
    "dashboard running": ("dashboard_jobs_running", {}, RUNNING_BOUND),
    "dashboard running of a worker": ("dashboard_jobs_running", {"worker_id": 1}, RUNNING_BOUND),
    "dashboard labelled": ("dashboard_jobs_labelled", {"tags": ["blue"]}, LABELLED_BOUND),
    "dashboard newest id": ("dashboard_job_id_max", {}, PAGE_BOUND),  # the top of each partition's id index
    "dashboard run key": ("dashboard_job_by_run_key", {"run_key": "$key"}, 4),
    "dashboard retrying count": ("dashboard_retrying_count", {"cap": RETRYING_CAP}, RETRYING_CAP + 1),
    "dashboard chart": ("dashboard_job_stats", {}, 0),
}
# Not yet within their bound in every statistics state (issue 16): what each reads instead. Their plans are still
# made and run here, and must not be JIT-compiled.
OPEN = {
    # Newest first by id, filtered on a column no index leads with: each partition's id index is read from the top
    # until a match, so a state, queue or task with few jobs reads the partitions of the others whole (the time
    # partitions of jobs_done hold one state each under the default retentions). Not so for a state (migration 0045:
    # dead and cancelled jobs have partial indexes of their own, succeeded ones are read only in the partitions that
    # hold one); a queue or a task would want an index every finish pays for (or pages by finish time, as the
    # dashboard's).
    "GET /jobs?queue=capped": "the jobs of other queues",
    "GET /jobs?task=rare": "the jobs of other tasks",
    # jobs_finished_idx orders by finish time alone: the page's tie-break on id reads every job finished at the
    # instant it ends on (here the FINISHED, or all, jobs plan_table finishes in one statement; a completer's batch).
    "dashboard succeeded": "every job finished at the same instant as the page's last one",
}
_DEFAULTS: dict[str, Any] = {
    "state": None,
    "queue": None,
    "task": None,
    "before_id": None,
    "limit": PAGE + 1,
    "tags": [],
    "meta": "{}",
    "id": 1,
    "now": None,
    "args": None,
    "floor_id": 0,
    "after_at": None,
    "after_id": None,
    "due": False,
    "later": False,
    "worker_id": None,
    "run_key": "$key",
    "hourly": False,
    "since": "2026-01-01",
    "until": "2026-01-02",
    "name": "nightly",
}


def _params(conn: psycopg.Connection[Any] | None) -> dict[str, dict[str, Any]]:
    """Each case's parameters; with ``conn``, the placeholders taken from the table (a job in the middle of the
    history, a running job, a run key of the history)."""
    found: dict[str, Any] = {}
    if conn is not None:
        row = conn.execute(
            "SELECT (SELECT id FROM pgsched.jobs_done WHERE state = 'dead' AND purge_at IS NOT NULL"
            "         ORDER BY id OFFSET (SELECT count(*) / 2 FROM pgsched.jobs_done WHERE state = 'dead') LIMIT 1),"
            "       (SELECT max(id) FROM pgsched.jobs_running),"
            "       (SELECT max(run_key) FROM pgsched.jobs_done),"
            "       (SELECT max(id) - 100000 FROM pgsched.jobs)"
        ).fetchone()
        assert row is not None
        history, running, key, floor = row
        at = conn.execute("SELECT finished_at FROM pgsched.jobs WHERE id = %s", (history,)).fetchone()
        assert at is not None
        found = {"$history": history, "$running": running, "$key": key, "$floor": floor, "$finished": at[0]}
    placeholders = {"$history": 1, "$running": 1, "$key": "key", "$floor": 0, "$finished": "2026-01-01", **found}
    return {
        case: {k: placeholders[v] if isinstance(v, str) and v.startswith("$") else v for k, v in params.items()}
        for case, params in ((case, {**_DEFAULTS, **given}) for case, (_, given, _) in CASES.items())
    }


def _session(dsn: str, plans: str) -> psycopg.Connection[Any]:
    """A connection as the API's (jit on), with generic or custom plans, that reports the plans it runs."""
    conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
    report_plans(conn)
    conn.execute(f"SET plan_cache_mode = force_{plans}_plan")
    return conn


def _fill(conn: psycopg.Connection[Any]) -> None:
    """The realistic table: plan_table's live jobs and history, jobs queued again after a failure (due in an hour),
    and the history's rare jobs fired by the schedule."""
    load(conn)
    fill_history(conn)
    conn.execute(
        "INSERT INTO pgsched.jobs (task, queue, attempt, run_at)"
        " SELECT 'noop', 'default', 1, now() + interval '1 hour' FROM generate_series(1, %s)",
        (RETRYING,),
    )
    conn.execute(
        "UPDATE pgsched.jobs SET schedule_id = (SELECT id FROM pgsched.schedules WHERE name = 'nightly')"
        " WHERE task = 'rare'"
    )


def _explain(
    conn: psycopg.Connection[Any], case: str, names: dict[str, list[str]], params: dict[str, Any]
) -> dict[str, Any]:
    name = CASES[case][0]
    return explain_executed(conn, name, names[name], params)


@pytest.mark.parametrize("stats", list(STATES))
def test_every_read_of_the_api_and_the_dashboard_visits_about_a_page_whatever_the_statistics_said(
    dsn: str, stats: str
) -> None:
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute(
            "INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE"
            " SELECT g, 'test', g FROM generate_series(1, %s) g",
            (WORKERS,),
        )
        setup.execute("INSERT INTO pgsched.schedules (name, cron, task) VALUES ('nightly', '0 3 * * *', 'noop')")
        set_limits(setup)
        STATES[stats](setup)
    explained: dict[str, dict[str, dict[str, Any]]] = {}
    with _session(dsn, "generic") as generic, _session(dsn, "custom") as custom:
        names = {name: prepare(generic, name) for name in sorted({name for name, _, _ in CASES.values()})}
        for name in names:
            prepare(custom, name)
        for case, params in _params(None).items():  # the generic plans are made now, and kept
            _explain(generic, case, names, params)
        with psycopg.connect(dsn, autocommit=True) as setup:
            _fill(setup)  # no ANALYZE: as under a backlog and a history that grew faster than autovacuum
            params = _params(setup)
        for plans, conn in (("generic", generic), ("custom", custom)):
            explained[plans] = {case: _explain(conn, case, names, params[case]) for case in CASES}
    for plans, run in explained.items():
        visited = {case: rows_visited(plan) for case, plan in run.items()}
        over = {case: n for case, n in visited.items() if n > CASES[case][2] and case not in OPEN}
        bounds = {case: CASES[case][2] for case in over}
        assert not over, f"{stats}, {plans} plans: rows visited {over} (bounds {bounds})"
        compiled = {case: n for case, plan in run.items() if (n := jit_compiled(plan))}
        assert not compiled, f"{stats}, {plans} plans: JIT-compiled statements {compiled}"


def test_the_pages_the_bounds_are_checked_on_are_full(dsn: str) -> None:
    """The row counts above are not vacuous: on the realistic table each list returns a whole page (one more row
    than the page: a next page exists), each lookup its row."""
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("INSERT INTO pgsched.schedules (name, cron, task) VALUES ('nightly', '0 3 * * *', 'noop')")
        set_limits(setup)
        _fill(setup)
        params = _params(setup)
    with _session(dsn, "custom") as conn:
        names = {name: prepare(conn, name) for name in sorted({name for name, _, _ in CASES.values()})}
        rows = {
            case: int(_explain(conn, case, names, params[case])["Actual Rows"])
            for case, (_, _, bound) in CASES.items()
            if bound in (PAGE_BOUND, LABELLED_BOUND, RUNNING_LIST_BOUND) and case != "dashboard newest id"
        }
    assert rows == dict.fromkeys(rows, PAGE + 1)
