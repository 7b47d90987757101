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

-- name: queue_counts_list
-- Per-queue counts for /queues and /metrics, bounded: exact from the hot indexes while a state has at most cap rows, else the leader's queue_counts.
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
finished_sample AS (
    SELECT f.state, f.queue
      FROM unnest('{succeeded,dead,cancelled}'::pgsched.job_state[]) AS s(state)
     CROSS JOIN LATERAL (SELECT j.state, j.queue FROM pgsched.jobs j
                          WHERE j.state = s.state AND j.finished_at IS NOT NULL
                          LIMIT %(cap)s::int + 1) f
),
finished_capped AS (
    SELECT fs.state FROM finished_sample fs GROUP BY fs.state HAVING count(*) > %(cap)s::int
),
names AS (
    SELECT qn.queue FROM queued_names qn WHERE qn.queue <> ''
    UNION SELECT r.queue FROM running r
    UNION SELECT fs.queue FROM finished_sample fs
    UNION SELECT c.queue FROM pgsched.queue_counts c
    UNION SELECT s.name FROM pgsched.queues s
),
live AS (
    SELECT n.queue, h.total,
           h.due, h.scheduled, h.oldest_due_at,
           (SELECT count(*) FROM finished_sample fs WHERE fs.queue = n.queue AND fs.state = 'succeeded') AS succeeded,
           (SELECT count(*) FROM finished_sample fs WHERE fs.queue = n.queue AND fs.state = 'dead') AS dead,
           (SELECT count(*) FROM finished_sample fs WHERE fs.queue = n.queue AND fs.state = 'cancelled') AS cancelled
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
),
picked AS (
    SELECT l.queue,
           l.total > %(cap)s::int AND c.queue IS NOT NULL AS queued_estimated,
           (SELECT array_agg(fc.state::text) FROM finished_capped fc) AS capped_states,
           l.total, l.due, l.scheduled, l.oldest_due_at, l.succeeded, l.dead, l.cancelled,
           c.due AS c_due, c.scheduled AS c_scheduled, c.succeeded AS c_succeeded, c.dead AS c_dead,
           c.cancelled AS c_cancelled, c.oldest_due_at AS c_oldest_due_at, c.counted_at
      FROM live l LEFT JOIN pgsched.queue_counts c ON c.queue = l.queue
)
SELECT p.queue,
       CASE WHEN p.queued_estimated THEN p.c_due ELSE p.due END AS due,
       CASE WHEN p.queued_estimated THEN p.c_scheduled ELSE p.scheduled END AS scheduled,
       coalesce(r.running, 0) AS running,
       CASE WHEN 'succeeded' = ANY(p.capped_states) THEN coalesce(p.c_succeeded, p.succeeded) ELSE p.succeeded END AS succeeded,
       CASE WHEN 'dead' = ANY(p.capped_states) THEN coalesce(p.c_dead, p.dead) ELSE p.dead END AS dead,
       CASE WHEN 'cancelled' = ANY(p.capped_states) THEN coalesce(p.c_cancelled, p.cancelled) ELSE p.cancelled END AS cancelled,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now())
               - CASE WHEN p.queued_estimated THEN p.c_oldest_due_at ELSE p.oldest_due_at END)::float8
           AS oldest_due_seconds,
       coalesce(s.paused, false) AS paused,
       s.concurrency AS concurrency_limit,
       s.rate_limit,
       extract(epoch FROM s.rate_period)::float8 AS rate_period_seconds,
       coalesce(r.running_keys, 0) AS running_keys,
       CASE WHEN p.queued_estimated OR (p.counted_at IS NOT NULL AND cardinality(p.capped_states) > 0)
            THEN extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - p.counted_at)::float8
       END AS counts_age_seconds
  FROM picked p
  LEFT JOIN running r ON r.queue = p.queue
  LEFT JOIN pgsched.queues s ON s.name = p.queue
 ORDER BY p.queue

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
