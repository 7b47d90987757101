"""The SQL core of workflows: waiting steps, release in the finishing transaction, policies, revival, races."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

Conn = psycopg.Connection[dict[str, Any]]


def _add(conn: Conn, wf: int | None, task: str, deps: list[int] = [], **options: Any) -> int:  # noqa: B006
    extra = "".join(f", {name} => %({name})s" for name in options)
    row = conn.execute(
        f"SELECT pgsched.workflow_add(%(wf)s, %(task)s, depends_on => %(deps)s::bigint[]{extra}) AS id",
        {"wf": wf, "task": task, "deps": deps, **options},
    ).fetchone()
    assert row is not None
    return int(row["id"])


def _workflow(conn: Conn, kind: str = "dag") -> int:
    row = conn.execute("SELECT pgsched.workflow_create('test', %(kind)s) AS id", {"kind": kind}).fetchone()
    assert row is not None
    return int(row["id"])


def _end(conn: Conn, job_id: int, state: str, result: Any = None) -> None:
    conn.execute(
        "UPDATE pgsched.jobs SET state = %(state)s::pgsched.job_state, finished_at = now(), result = %(result)s::jsonb"
        " WHERE id = %(id)s",
        {"id": job_id, "state": state, "result": None if result is None else str(result)},
    )


def _state(conn: Conn, job_id: int) -> str:
    row = conn.execute("SELECT state::text AS state FROM pgsched.jobs WHERE id = %(id)s", {"id": job_id}).fetchone()
    assert row is not None
    return str(row["state"])


def _job(conn: Conn, job_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM pgsched.jobs WHERE id = %(id)s", {"id": job_id}).fetchone()
    assert row is not None
    return row


def test_a_step_with_dependencies_waits_and_claims_never_see_it(conn: Conn) -> None:
    wf = _workflow(conn)
    a = _add(conn, wf, "a")
    b = _add(conn, wf, "b", [a])
    assert (_state(conn, a), _state(conn, b)) == ("queued", "waiting")
    row = conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE state = 'queued'").fetchone()
    assert row is not None and row["n"] == 1


def test_the_last_dependency_to_succeed_releases_the_dependent_with_results(conn: Conn) -> None:
    wf = _workflow(conn)
    a, b = _add(conn, wf, "a"), _add(conn, wf, "b")
    c = _add(conn, wf, "c", [b, a], results_arg="results")
    _end(conn, a, "succeeded", 1)
    assert _state(conn, c) == "waiting"
    _end(conn, b, "succeeded", 2)
    job = _job(conn, c)
    assert job["state"] == "queued"
    assert job["args"] == {"results": [2, 1]}  # in depends_on order


def test_a_dead_dependency_cancels_the_dependent_and_its_dependents_by_default(conn: Conn) -> None:
    wf = _workflow(conn)
    a = _add(conn, wf, "a")
    b = _add(conn, wf, "b", [a])
    c = _add(conn, wf, "c", [b])
    _end(conn, a, "dead")
    assert (_state(conn, b), _state(conn, c)) == ("cancelled", "cancelled")
    assert _job(conn, b)["errors"][-1]["kind"] == "dependency_failed"
    assert _job(conn, b)["errors"][-1]["error"] == f"dependency {a} ended dead"


def test_policy_run_runs_the_dependent_after_a_dead_dependency(conn: Conn) -> None:
    wf = _workflow(conn)
    a, b = _add(conn, wf, "a"), _add(conn, wf, "b")
    c = _add(conn, wf, "c", [a, b], on_failure="run", results_arg="got")
    _end(conn, a, "dead")
    assert _state(conn, c) == "waiting"
    _end(conn, b, "succeeded", 7)
    assert _job(conn, c)["state"] == "queued"
    assert _job(conn, c)["args"] == {"got": [None, 7]}


def test_policy_failed_runs_only_when_a_dependency_failed(conn: Conn) -> None:
    wf = _workflow(conn)
    a, b = _add(conn, wf, "a"), _add(conn, wf, "b")
    on_failure = _add(conn, wf, "on_failure", [a, b], on_failure="failed")
    _end(conn, a, "succeeded", 1)
    _end(conn, b, "succeeded", 1)
    assert _state(conn, on_failure) == "cancelled"
    c, d = _add(conn, wf, "c"), _add(conn, wf, "d")
    other = _add(conn, wf, "on_failure", [c, d], on_failure="failed")
    _end(conn, c, "dead")
    assert _state(conn, other) == "waiting"
    _end(conn, d, "succeeded", 1)
    assert _state(conn, other) == "queued"


def test_a_dependency_that_already_ended_is_counted_at_creation(conn: Conn) -> None:
    a = _add(conn, None, "a")
    _end(conn, a, "succeeded", 5)
    b = _add(conn, None, "b", [a], results_arg="r")
    assert _job(conn, b)["state"] == "queued" and _job(conn, b)["args"] == {"r": [5]}
    d = _add(conn, None, "d")
    _end(conn, d, "cancelled")
    assert _state(conn, _add(conn, None, "e", [d])) == "cancelled"


def test_retrying_a_dead_step_revives_the_steps_it_cancelled(conn: Conn) -> None:
    wf = _workflow(conn)
    a = _add(conn, wf, "a")
    b = _add(conn, wf, "b", [a])
    c = _add(conn, wf, "c", [b])
    _end(conn, a, "dead")
    conn.execute("SELECT pgsched.retry(%(id)s)", {"id": a})
    assert (_state(conn, a), _state(conn, b), _state(conn, c)) == ("queued", "waiting", "waiting")
    _end(conn, a, "succeeded", 1)
    assert (_state(conn, b), _state(conn, c)) == ("queued", "waiting")


def test_a_long_chain_cancels_iteratively_without_nesting_triggers(conn: Conn) -> None:
    wf = _workflow(conn, "chain")
    first = _add(conn, wf, "a")
    previous = first
    for _ in range(1500):
        previous = _add(conn, wf, "a", [previous])
    _end(conn, first, "dead")
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE state = 'cancelled') AS n FROM pgsched.jobs WHERE workflow_id = %(wf)s",
        {"wf": wf},
    ).fetchone()
    assert row is not None and row["n"] == 1500


def test_cancelling_a_workflow_cancels_unfinished_steps_and_signals_running_ones(conn: Conn) -> None:
    wf = _workflow(conn)
    a, b = _add(conn, wf, "a"), _add(conn, wf, "b")
    c = _add(conn, wf, "c", [a, b])
    _end(conn, a, "succeeded", 1)
    conn.execute("UPDATE pgsched.jobs SET state = 'running' WHERE id = %(id)s", {"id": b})
    row = conn.execute("SELECT pgsched.workflow_cancel(%(wf)s) AS n", {"wf": wf}).fetchone()
    assert row is not None and row["n"] == 2
    assert (_state(conn, a), _state(conn, b), _state(conn, c)) == ("succeeded", "running", "cancelled")
    assert _job(conn, b)["cancel_requested_at"] is not None
    status = conn.execute("SELECT * FROM pgsched.workflow_status WHERE id = %(wf)s", {"wf": wf}).fetchone()
    assert status is not None and (status["succeeded"], status["running"], status["cancelled"]) == (1, 1, 1)


def test_sql_errors_name_the_problem(conn: Conn) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="dependency 999999 does not exist"):
        _add(conn, None, "a", [999999])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="on_failure must be"):
        _add(conn, None, "a", [], on_failure="maybe")
    with pytest.raises(psycopg.errors.NoDataFound, match="workflow 424242 does not exist"):
        conn.execute("SELECT pgsched.workflow_cancel(424242)")


def _finish_in_parallel(dsn: str, deps: list[int]) -> None:
    """Each dependency ends in its own transaction, all started together (a barrier), committed at once."""
    barrier = threading.Barrier(len(deps))
    errors: list[BaseException] = []

    def finish(job_id: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=False) as c:
                barrier.wait(10)
                c.execute("UPDATE pgsched.jobs SET state = 'succeeded', result = '1' WHERE id = %(id)s", {"id": job_id})
                c.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=finish, args=(d,)) for d in deps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


def test_two_dependencies_ending_in_overlapping_transactions_release_the_dependent_once(dsn: str, conn: Conn) -> None:
    # Deterministic interleaving: T1 ends a and holds its transaction open; T2 ends b meanwhile (it must wait
    # for T1's lock on the dependent, or it counts a as unfinished and nobody releases c); then T1 commits.
    wf = _workflow(conn)
    a, b = _add(conn, wf, "a"), _add(conn, wf, "b")
    c = _add(conn, wf, "c", [a, b], results_arg="results")
    with psycopg.connect(dsn, autocommit=False) as t1, psycopg.connect(dsn, autocommit=False) as t2:
        t1.execute("UPDATE pgsched.jobs SET state = 'succeeded', result = '1' WHERE id = %(id)s", {"id": a})
        second = threading.Thread(
            target=lambda: (
                t2.execute("UPDATE pgsched.jobs SET state = 'succeeded', result = '2' WHERE id = %(id)s", {"id": b}),
                t2.commit(),
            )
        )
        second.start()
        second.join(0.5)  # T2 is blocked on the dependent's row lock (or, without the lock, done)
        t1.commit()
        second.join(10)
    job = _job(conn, c)
    assert job["state"] == "queued"
    assert job["args"] == {"results": [1, 2]}


def test_dependencies_ending_at_the_same_instant_release_the_dependent_exactly_once(dsn: str, conn: Conn) -> None:
    for _ in range(40):
        wf = _workflow(conn)
        deps = [_add(conn, wf, "a") for _ in range(3)]
        c = _add(conn, wf, "c", deps, results_arg="results")
        _finish_in_parallel(dsn, deps)
        job = _job(conn, c)
        assert job["state"] == "queued", f"round with deps {deps}: the dependent is {job['state']}"
        assert job["args"] == {"results": [1, 1, 1]}


def test_only_jobs_with_dependents_run_the_trigger_function(dsn: str, conn: Conn) -> None:
    plain = _add(conn, None, "plain")
    awaited = _add(conn, None, "awaited")
    _add(conn, None, "after", [awaited])
    with psycopg.connect(dsn, autocommit=False, row_factory=dict_row) as c:
        c.execute("SET LOCAL track_functions = 'pl'")
        # The end moves the row from jobs_queued to jobs_done; the row trigger notes it, and the statement trigger
        # advances its dependents (pgsched.dependents_advance), once.
        calls = (
            "SELECT pg_stat_get_xact_function_calls('pgsched.dependents_advance(bigint[], pgsched.job_state)'"
            "::regprocedure) AS n"
        )
        c.execute("UPDATE pgsched.jobs SET state = 'succeeded' WHERE id = %(id)s", {"id": plain})
        row = c.execute(calls).fetchone()
        assert row is not None and not row["n"]
        # Nor does a plain statement call the statement trigger's function: its WHEN finds nothing noted.
        trigger_calls = c.execute(
            "SELECT pg_stat_get_xact_function_calls('pgsched.jobs_advance_dependents()'::regprocedure) AS n"
        ).fetchone()
        assert trigger_calls is not None and not trigger_calls["n"]
        c.execute("UPDATE pgsched.jobs SET state = 'succeeded' WHERE id = %(id)s", {"id": awaited})
        row = c.execute(calls).fetchone()
        assert row is not None and row["n"] == 1


def test_one_statement_that_ends_many_steps_advances_all_their_dependents_in_one_call_per_new_state(
    dsn: str, conn: Conn
) -> None:
    wf = _workflow(conn)
    firsts = [_add(conn, wf, "first") for _ in range(60)]
    seconds = [_add(conn, wf, "second", [first]) for first in firsts]
    fan_in = _add(conn, wf, "fan_in", firsts[20:40], on_failure="run")  # 10 of them die: it runs anyway
    doomed = firsts[30:45]
    with psycopg.connect(dsn, autocommit=False, row_factory=dict_row) as c:
        c.execute("SET LOCAL track_functions = 'pl'")
        # One statement, as a worker's batch finish: 45 succeed, 15 die, in no particular order.
        c.execute(
            "UPDATE pgsched.jobs SET finished_at = now(),"
            " state = CASE WHEN id = ANY(%(doomed)s) THEN 'dead' ELSE 'succeeded' END::pgsched.job_state"
            " WHERE id = ANY(%(ids)s)",
            {"doomed": doomed, "ids": list(reversed(firsts[:30] + doomed + firsts[45:]))},
        )
        row = c.execute(
            "SELECT pg_stat_get_xact_function_calls('pgsched.dependents_advance(bigint[], pgsched.job_state)'"
            "::regprocedure) AS n"
        ).fetchone()
        c.commit()
    assert row is not None and row["n"] == 2  # one call for the succeeded ones, one for the dead
    states = {first: _state(conn, second) for first, second in zip(firsts, seconds, strict=True)}
    assert all(states[f] == "cancelled" for f in doomed)
    assert all(states[f] == "queued" for f in firsts if f not in doomed)
    assert _job(conn, fan_in)["state"] == "queued" and _job(conn, fan_in)["deps_left"] == 0


def test_a_retried_dependency_is_waited_for_again(conn: Conn) -> None:
    wf = _workflow(conn)
    a, b = _add(conn, wf, "a"), _add(conn, wf, "b")
    c = _add(conn, wf, "c", [a, b], on_failure="run")
    _end(conn, a, "dead")
    conn.execute("SELECT pgsched.retry(%(id)s)", {"id": a})
    _end(conn, b, "succeeded", 2)
    assert _state(conn, c) == "waiting"  # a runs again: c waits for it
    _end(conn, a, "succeeded", 1)
    assert _job(conn, c)["state"] == "queued"
    assert _job(conn, c)["deps_left"] == 0
