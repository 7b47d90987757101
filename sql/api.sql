-- name: cluster_list
-- Registered pgsched processes from the cluster view, leader first, with heartbeat age in seconds.
SELECT id, role, host, pid, queues, concurrency, version, started_at, heartbeat_at,
       extract(epoch FROM heartbeat_age)::float8 AS heartbeat_age_seconds, alive, is_leader
  FROM pgsched.cluster
 ORDER BY is_leader DESC, id

-- name: health_check
-- Database round trip plus leader presence and live workers, for /health.
SELECT true AS database,
       pgsched.leader_present() AS leader,
       (SELECT count(*) FROM pgsched.cluster c WHERE c.alive)::int AS workers_alive,
       (SELECT count(*) FROM pgsched.waiting_workers)::int AS listeners_waiting

-- name: queue_counts_list
-- Per-queue counts for /queues and /metrics at a bounded cost whatever the statistics: exact from the claim indexes while a state has at most cap rows, else the leader's queue_counts (pgsched.queue_counts_list).
SELECT * FROM pgsched.queue_counts_list(%(cap)s::int, %(now)s::timestamptz)

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
