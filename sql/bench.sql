-- Queries of `pgsched bench` only (never on the worker's path).

-- name: bench_pending
-- Whether any job of the queue is still queued or running (the drain is over when not). Plain queued jobs are looked
-- for from the far end of the claim index, backward: the drain claims from the front, so the last entry stays live
-- until the end and a look reads a few buffers. Looking from the front walked the entries of every job claimed since
-- the last vacuum, ~1,800 buffers and ~10 ms of server CPU mid-drain, taken from the workers being measured.
SELECT (SELECT j.id FROM pgsched.jobs j
         WHERE j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue = %(queue)s::text
         ORDER BY j.priority, j.run_at DESC, j.id DESC LIMIT 1) IS NOT NULL
    OR EXISTS (SELECT 1 FROM pgsched.jobs j
                WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue = %(queue)s::text)
    OR EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.state = 'running' AND j.queue = %(queue)s::text) AS pending

-- name: bench_started
-- Whether any job has started (running or succeeded): a cold worker has begun to drain.
SELECT EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.state = 'running')
    OR EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.state = 'succeeded' AND j.finished_at IS NOT NULL) AS started

-- name: bench_drain_window
-- Succeeded jobs of a queue and the database's own drain time: first start to last finish.
SELECT count(*)::bigint AS done,
       coalesce(extract(epoch FROM max(finished_at) - min(started_at)), 0)::float8 AS seconds
  FROM pgsched.jobs WHERE queue = %(queue)s::text AND state = 'succeeded'

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

-- name: bench_server_settings
-- PostgreSQL version, the settings that shape the figures, and whether pg_stat_statements is there.
SELECT current_setting('server_version') AS version,
       current_setting('autovacuum') AS autovacuum,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('fsync') AS fsync,
       current_setting('shared_buffers') AS shared_buffers,
       current_setting('max_connections') AS max_connections,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements') AS statements_available,
       'pg_stat_statements' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
           AS statements_loaded

-- name: bench_notify_off
-- Opt this session out of the insert trigger's NOTIFY (the "notifications disabled" baseline).
SELECT set_config('pgsched.notify', 'off', false) AS notify

-- name: bench_insert_series
-- The database's own insert ceiling: n no-op jobs inserted server-side in one statement (no client rows).
-- Queue, priority and max_attempts are given, as enqueue_many gives them: the registry's defaults trigger
-- (migration 0010) is then skipped, so the ceiling is the table's insert cost, not the defaults look-up.
INSERT INTO pgsched.jobs (queue, task, args, priority, max_attempts)
SELECT %(queue)s::text, 'noop', '{}'::jsonb, 0, 5 FROM generate_series(1, %(n)s::int)

-- name: bench_delete_queue
-- Remove every job of a queue (the ceiling's rows, so they do not weigh on the next figure).
DELETE FROM pgsched.jobs WHERE queue = %(queue)s::text

-- name: bench_table_stats
-- Size with indexes, dead tuples and (auto)vacuum/analyze counts of pgsched.jobs, summed over its partitions (soak samples; vacuums:
-- those not by autovacuum, the leader's of the live partitions (pgsched.live_vacuum));
-- then the dead tuples made so far (non-HOT updates and deletes, each leaves one) in all partitions, in jobs_queued (the table the claim scans) and in jobs_running.
SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint AS total_bytes,
       coalesce(sum(s.n_live_tup), 0)::bigint AS live, coalesce(sum(s.n_dead_tup), 0)::bigint AS dead,
       coalesce(sum(s.autovacuum_count), 0)::bigint AS autovacuums, coalesce(sum(s.autoanalyze_count), 0)::bigint AS autoanalyzes,
       coalesce(sum(s.analyze_count), 0)::bigint AS analyzes,
       coalesce(sum(s.n_tup_upd - s.n_tup_hot_upd + s.n_tup_del), 0)::bigint AS dead_made,
       coalesce(sum(s.n_tup_upd - s.n_tup_hot_upd + s.n_tup_del) FILTER (WHERE t.relid = 'pgsched.jobs_queued'::regclass), 0)::bigint
           AS queued_dead_made,
       coalesce(sum(s.n_tup_upd - s.n_tup_hot_upd + s.n_tup_del) FILTER (WHERE t.relid = 'pgsched.jobs_running'::regclass), 0)::bigint
           AS running_dead_made,
       coalesce(sum(s.vacuum_count), 0)::bigint AS vacuums
  FROM pg_partition_tree('pgsched.jobs') t
  LEFT JOIN pg_stat_user_tables s ON s.relid = t.relid
 WHERE t.isleaf

-- name: bench_start_latency
-- Enqueue->start p50/p99 (ms, the database's clock) of the jobs of a queue that finished in a window.
SELECT count(*)::bigint AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))::float8 * 1000 AS p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))::float8 * 1000 AS p99_ms
  FROM pgsched.jobs
 WHERE state = 'succeeded' AND finished_at >= %(since)s::timestamptz AND finished_at < %(until)s::timestamptz
   AND queue = %(queue)s::text

-- name: bench_clock
-- The database's clock (soak windows are cut on it, like started_at and finished_at).
SELECT clock_timestamp() AS now

-- name: bench_statement_times
-- Calls and total time of pgsched's statements here (not the bench's own); COPY: the view may be absent.
COPY (
    SELECT s.queryid, left(regexp_replace(s.query, '\s+', ' ', 'g'), 90), s.calls, s.total_exec_time
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     WHERE d.datname = current_database() AND position('pgsched.' IN s.query) > 0
       AND position('pg_stat_statements' IN s.query) = 0 AND position('percentile_cont' IN s.query) = 0
       AND position('pg_stat_user_tables' IN s.query) = 0
) TO STDOUT

-- name: bench_workflows_delete
-- Remove every workflow (their steps went with bench_delete_queue), so the next creation starts from empty tables.
DELETE FROM pgsched.workflows

-- name: bench_history_partitions
-- The time partitions of finished jobs that `pgsched migrate` makes before any worker starts (width and retention: the defaults), as pgsched.history_maintain: the scratch databases are migrated with Migrator alone.
SELECT created FROM pgsched.history_maintain(make_interval(secs => %(width)s::float8), now())

-- name: bench_history_retention
-- History bench: keep finished jobs `days` days (the default of every state), and create their one-day time partitions; the time they were made for.
WITH kept AS (
    UPDATE pgsched.retention SET keep = make_interval(days => %(days)s::int) WHERE queue = '*' RETURNING 1
)
SELECT now() AS at, h.* FROM (SELECT count(*) FROM kept) k, pgsched.history_maintain(interval '1 day', now()) h

-- name: bench_history_queue_kept
-- History bench: the drained jobs of this queue are kept past every time partition (they land in the default partition).
INSERT INTO pgsched.retention (queue, state, keep)
SELECT %(queue)s::text, s, interval '3650 days' FROM unnest('{succeeded,dead,cancelled}'::pgsched.job_state[]) AS s

-- name: bench_history_load
-- History bench: finished jobs first+1 .. first+n of `total`, id = their number (ids rise with finish time, as they do for real), finished evenly over the `days` days before `at` and kept `days` days, straight into jobs_done (routed to their time partitions by purge_at; the statement trigger of pgsched.jobs, which only notifies workers of queued jobs, has nothing to do for them); 90 % succeeded, 8 % dead, 2 % cancelled.
INSERT INTO pgsched.jobs_done (id, task, queue, args, priority, max_attempts, attempt, state, run_at, started_at,
                               finished_at, purge_at, result)
SELECT g, 'noop', 'history', '{}', 0, 1, 1, s.state, f.at - interval '2 s', f.at - interval '1 s', f.at,
       f.at + make_interval(days => %(days)s::int), CASE WHEN s.state = 'succeeded' THEN '{"ok": true}'::jsonb END
  FROM generate_series(%(first)s::bigint + 1, %(first)s::bigint + %(n)s::int) g
 CROSS JOIN LATERAL (SELECT %(at)s::timestamptz - (1 - g::float8 / %(total)s::bigint) * make_interval(days => %(days)s::int) AS at) f
 CROSS JOIN LATERAL (SELECT CASE WHEN g %% 50 = 0 THEN 'cancelled' WHEN g %% 12 = 0 THEN 'dead'
                                 ELSE 'succeeded' END::pgsched.job_state AS state) s

-- name: bench_history_ids_taken
-- History bench: the id sequence goes on after the loaded jobs' ids, as if it had handed them out.
SELECT setval(pg_get_serial_sequence('pgsched.jobs', 'id'), greatest(%(total)s::bigint, 1))

-- name: bench_history_span
-- History bench: bytes of the time partitions, and the lowest and highest job id.
SELECT (SELECT sum(h.bytes) FROM pgsched.history_partitions h)::float8 AS bytes,
       (SELECT min(j.id) FROM pgsched.jobs j) AS low, (SELECT max(j.id) FROM pgsched.jobs j) AS high

-- name: bench_history_biggest
-- History bench: the `n` time partitions holding the most (the days to drop).
SELECT h.name FROM pgsched.history_partitions h ORDER BY h.bytes DESC LIMIT %(n)s::int

-- name: bench_history_drop
-- History bench: drop one time partition.
SELECT pgsched.history_partition_drop(%(name)s::text)

-- name: bench_relation_sizes
-- Soak: table+index+toast bytes of every pgsched table (time partitions of finished jobs summed as jobs_done), dead tuples of each.
-- A table dropped while this runs (retention drops time partitions) has no size: NULL, counted as 0.
SELECT CASE WHEN p.relid IS NOT NULL AND c.relname <> 'jobs_done_default' THEN 'jobs_done' ELSE c.relname::text END AS name,
       coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes, coalesce(sum(s.n_dead_tup), 0)::bigint AS dead
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'pgsched'
  LEFT JOIN pg_partition_tree('pgsched.jobs_done') p ON p.relid = c.oid AND p.isleaf
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.relkind = 'r'
 GROUP BY 1
 ORDER BY 1

-- name: bench_history_leaves
-- History bench: every leaf partition of finished jobs (each vacuumed after the bulk load).
SELECT c.relname FROM pg_partition_tree('pgsched.jobs_done') t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf ORDER BY 1

-- name: bench_history_recount
-- History bench: the leader counts every partition of the loaded history again on its next pass (jobs inserted straight into history with past finish times are otherwise counted within history_counts.RECOUNT_EVERY).
DELETE FROM pgsched.history_count_marks

-- name: bench_cron_schedules
-- n schedules firing every second (six-field cron) in one time zone, with the default misfire policy; their task is
-- served by no worker, so every fired job stays queued where bench_cron_fired counts it.
INSERT INTO pgsched.schedules (name, cron, task, timezone)
SELECT 'bench-' || g, '* * * * * *', 'noop', %(timezone)s::text FROM generate_series(1, %(n)s::int) g

-- name: bench_cron_first_fire
-- Whether the leader has fired any instant yet (a scheduled job exists).
SELECT EXISTS (SELECT 1 FROM pgsched.jobs WHERE schedule_id IS NOT NULL)

-- name: bench_cron_fired
-- The jobs fired for instants in [start, end): how many, for how many distinct (schedule, instant) pairs (a second
-- job for one pair would be a double fire), and how late each fire's insert began after its instant (created_at is
-- the fire transaction's start). In double precision throughout, each percentile capped by the next: interpolated
-- between two equal values, percentile_cont can come out one rounding above them.
SELECT f.fired, f.pairs, least(f.p50, f.p99) * 1000 AS late_p50_ms, least(f.p99, f.top) * 1000 AS late_p99_ms,
       f.top * 1000 AS late_max_ms
  FROM (SELECT count(*) AS fired, count(DISTINCT (schedule_id, run_at)) AS pairs,
               coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - run_at)::float8), 0)
                   AS p50,
               coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - run_at)::float8),
                        0) AS p99,
               coalesce(max(extract(epoch FROM created_at - run_at)::float8), 0) AS top
          FROM pgsched.jobs
         WHERE schedule_id IS NOT NULL AND run_at >= %(start)s::timestamptz AND run_at < %(end)s::timestamptz) f

-- name: bench_now
-- The server's clock, whole seconds up (the first instant of a cron window).
SELECT date_trunc('second', clock_timestamp()) + interval '1 second' AS start
