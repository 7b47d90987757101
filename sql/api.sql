-- name: cluster_list
-- Registered pgsched processes from the cluster view, leader first, with heartbeat age in seconds.
SELECT id, role, host, pid, queues, concurrency, version, started_at, heartbeat_at,
       extract(epoch FROM heartbeat_age)::float8 AS heartbeat_age_seconds, alive, is_leader
  FROM pgsched.cluster
 ORDER BY is_leader DESC, id

-- name: health_check
-- Database round trip plus leader presence and live workers, for /health.
SELECT true AS database,
       EXISTS (SELECT 1 FROM pg_locks l
                WHERE l.locktype = 'advisory' AND l.granted
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND l.classid = pgsched.lock_namespace()::oid AND l.objid = 0 AND l.objsubid = 2) AS leader,
       (SELECT count(*) FROM pgsched.cluster c WHERE c.alive)::int AS workers_alive,
       (SELECT count(*) FROM pgsched.waiting_workers)::int AS listeners_waiting

-- name: metrics_snapshot
-- Gauges read at scrape time: per-queue counts by state and oldest due age, as one JSON document.
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'queue', queue, 'due', due, 'scheduled', scheduled, 'running', running, 'succeeded', succeeded,
           'dead', dead, 'cancelled', cancelled,
           'oldest_due_seconds', coalesce(extract(epoch FROM oldest_due_age)::float8, 0))), '[]'::jsonb) AS queues
  FROM pgsched.queue_stats

-- name: table_bloat_list
-- Dead-tuple counts of pgsched's tables, for `pgsched doctor`.
SELECT relname AS table_name, n_live_tup::bigint AS live, n_dead_tup::bigint AS dead,
       last_autovacuum
  FROM pg_stat_user_tables
 WHERE schemaname = 'pgsched'
 ORDER BY n_dead_tup DESC

-- name: long_transaction_list
-- Transactions open longer than the threshold (they hold back vacuum), for `pgsched doctor`.
SELECT pid, application_name, state,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - xact_start)::float8 AS seconds
  FROM pg_stat_activity
 WHERE xact_start IS NOT NULL
   AND xact_start < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(threshold)s::float8)
   AND pid <> pg_backend_pid()
 ORDER BY xact_start
