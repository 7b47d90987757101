-- Queries of `pgsched bench` only (never on the worker's path).

-- name: bench_pending
-- Whether any job of the queue is still queued or running (the drain is over when not).
SELECT EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.state = 'queued' AND j.queue = %(queue)s::text)
    OR EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.state = 'running' AND j.queue = %(queue)s::text) AS pending

-- name: bench_state_counts
-- Jobs of a queue per state, to check a run executed everything exactly once.
SELECT state::text AS state, count(*) AS n FROM pgsched.jobs WHERE queue = %(queue)s::text GROUP BY state

-- name: bench_results
-- Results of the jobs of a queue with a task, by id (the latency probe returns its start time).
SELECT id, result FROM pgsched.jobs WHERE queue = %(queue)s::text AND task = %(task)s::text AND state = 'succeeded'

-- name: bench_worker_waiting
-- Whether a worker process (by pid) is registered and waiting on the queue, i.e. idle and listening.
SELECT EXISTS (
    SELECT 1 FROM pgsched.waiting_workers w JOIN pgsched.workers k ON k.id = w.worker_id
     WHERE w.queue = %(queue)s::text AND k.pid = %(pid)s::int
) AS waiting

-- name: bench_backend_pids
-- Server process ids of the connections a pgsched process opened (application_name pgsched:<role>:<pid>).
SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgsched:%%:' || %(pid)s::text

-- name: bench_server_facts
-- PostgreSQL version and the settings that shape the figures.
SELECT current_setting('server_version') AS version,
       current_setting('shared_buffers') AS shared_buffers,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('fsync') AS fsync,
       current_setting('max_connections') AS max_connections,
       inet_server_addr()::text AS address

-- name: bench_notify_off
-- Opt this session out of the insert trigger's NOTIFY (the "notifications disabled" baseline).
SELECT set_config('pgsched.notify', 'off', false) AS notify

-- name: bench_insert_series
-- The database's own insert ceiling: n no-op jobs inserted server-side in one statement (no client rows).
INSERT INTO pgsched.jobs (queue, task, args)
SELECT %(queue)s::text, 'noop', '{}'::jsonb FROM generate_series(1, %(n)s::int)

-- name: bench_delete_queue
-- Remove every job of a queue (the ceiling's rows, so they do not weigh on the next figure).
DELETE FROM pgsched.jobs WHERE queue = %(queue)s::text

-- name: bench_dead_tuples
-- Live and dead tuples of pgsched.jobs from the statistics collector (sampled during a long drain).
SELECT coalesce(n_live_tup, 0)::bigint AS live, coalesce(n_dead_tup, 0)::bigint AS dead
  FROM pg_stat_user_tables WHERE schemaname = 'pgsched' AND relname = 'jobs'
