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

-- name: jit_off_local
-- No JIT for the rest of this transaction (short queries whose compilation would cost more than they do).
SELECT set_config('jit', 'off', true)

-- name: queue_counts_list
-- Per-queue counts for /queues and /metrics at a bounded cost: exact from the hot indexes while a state has at most cap rows, else the leader's queue_counts.
WITH RECURSIVE queued_names(queue) AS (
    SELECT ''::text
    UNION ALL
    SELECT least((SELECT min(j.queue) FROM pgsched.jobs j
                   WHERE j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue > q.queue),
                 (SELECT min(j.queue) FROM pgsched.jobs j
                   WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue > q.queue))
      FROM queued_names q
     WHERE q.queue IS NOT NULL
),
running AS (
    SELECT j.queue, count(*) AS running, count(DISTINCT j.concurrency_key) AS running_keys
      FROM pgsched.jobs j WHERE j.state = 'running' GROUP BY j.queue
),
finished AS (
    SELECT f.queue,
           count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE f.state = 'dead') AS dead,
           count(*) FILTER (WHERE f.state = 'cancelled') AS cancelled
      FROM unnest('{succeeded,dead,cancelled}'::pgsched.job_state[]) AS s(state)
     CROSS JOIN LATERAL (SELECT j.state, j.queue FROM pgsched.jobs j
                          WHERE j.state = s.state AND j.finished_at IS NOT NULL
                          ORDER BY j.finished_at DESC
                          LIMIT %(cap)s::int + 1) f
     GROUP BY f.queue
),
capped AS (
    SELECT coalesce(sum(f.succeeded), 0) > %(cap)s::int AS succeeded,
           coalesce(sum(f.dead), 0) > %(cap)s::int AS dead,
           coalesce(sum(f.cancelled), 0) > %(cap)s::int AS cancelled
      FROM finished f
),
names AS (
    SELECT qn.queue FROM queued_names qn WHERE qn.queue <> ''
    UNION SELECT r.queue FROM running r
    UNION SELECT f.queue FROM finished f
    UNION SELECT c.queue FROM pgsched.queue_counts c
    UNION SELECT s.name FROM pgsched.queues s
),
live AS (
    SELECT n.queue, h.total > %(cap)s::int AS queued_capped, h.due, h.scheduled, h.oldest_due_at
      FROM names n
     CROSS JOIN LATERAL (
        SELECT count(*) AS total,
               count(*) FILTER (WHERE q.run_at <= coalesce(%(now)s::timestamptz, now())) AS due,
               count(*) FILTER (WHERE q.run_at > coalesce(%(now)s::timestamptz, now())) AS scheduled,
               min(q.run_at) FILTER (WHERE q.run_at <= coalesce(%(now)s::timestamptz, now())) AS oldest_due_at
          FROM ((SELECT j.run_at FROM pgsched.jobs j
                  WHERE j.queue = n.queue AND j.state = 'queued' AND j.concurrency_key IS NULL
                  LIMIT %(cap)s::int + 1)
                UNION ALL
                (SELECT j.run_at FROM pgsched.jobs j
                  WHERE j.queue = n.queue AND j.state = 'queued' AND j.concurrency_key IS NOT NULL
                  LIMIT %(cap)s::int + 1)) q
     ) h
)
SELECT l.queue,
       CASE WHEN l.queued_capped THEN coalesce(c.due, l.due) ELSE l.due END AS due,
       CASE WHEN l.queued_capped THEN coalesce(c.scheduled, l.scheduled) ELSE l.scheduled END AS scheduled,
       coalesce(r.running, 0) AS running,
       CASE WHEN k.succeeded THEN coalesce(c.succeeded, f.succeeded, 0) ELSE coalesce(f.succeeded, 0) END AS succeeded,
       CASE WHEN k.dead THEN coalesce(c.dead, f.dead, 0) ELSE coalesce(f.dead, 0) END AS dead,
       CASE WHEN k.cancelled THEN coalesce(c.cancelled, f.cancelled, 0) ELSE coalesce(f.cancelled, 0) END AS cancelled,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now())
               - CASE WHEN l.queued_capped THEN coalesce(c.oldest_due_at, l.oldest_due_at) ELSE l.oldest_due_at END
       )::float8 AS oldest_due_seconds,
       coalesce(s.paused, false) AS paused,
       s.concurrency AS concurrency_limit,
       s.rate_limit,
       extract(epoch FROM s.rate_period)::float8 AS rate_period_seconds,
       coalesce(r.running_keys, 0) AS running_keys,
       CASE WHEN l.queued_capped OR k.succeeded OR k.dead OR k.cancelled
            THEN extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - c.counted_at)::float8
       END AS counts_age_seconds
  FROM live l
 CROSS JOIN capped k
  LEFT JOIN running r ON r.queue = l.queue
  LEFT JOIN finished f ON f.queue = l.queue
  LEFT JOIN pgsched.queue_counts c ON c.queue = l.queue
  LEFT JOIN pgsched.queues s ON s.name = l.queue
 ORDER BY l.queue

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
