-- name: retention_list
-- Every retention row: the defaults (queue *, written by the leader from its settings) first, then each queue's own.
SELECT r.queue, r.state::text AS state, extract(epoch FROM r.keep)::float8 AS keep_seconds,
       CASE WHEN r.queue = '*' THEN 'default' ELSE 'queue' END AS source, r.updated_at
  FROM pgsched.retention r
 ORDER BY r.queue <> '*', r.queue, r.state

-- name: retention_effective_list
-- The retention one queue's jobs get per final state: its own row, else the defaults (queue *), else one day (as the finish).
SELECT %(queue)s::text AS queue, s.state::text AS state,
       extract(epoch FROM coalesce(own.keep, def.keep, interval '1 day'))::float8 AS keep_seconds,
       CASE WHEN own.keep IS NOT NULL AND %(queue)s::text <> '*' THEN 'queue' ELSE 'default' END AS source,
       coalesce(own.updated_at, def.updated_at) AS updated_at
  FROM unnest(ARRAY['succeeded', 'dead', 'cancelled']::pgsched.job_state[]) WITH ORDINALITY AS s(state, n)
  LEFT JOIN pgsched.retention own ON own.queue = %(queue)s::text AND own.state = s.state
  LEFT JOIN pgsched.retention def ON def.queue = '*' AND def.state = s.state
 ORDER BY s.n

-- name: retention_set
-- Set how long a queue keeps its jobs finished in one state (jobs that finish from now on; purge_at is fixed at the finish).
INSERT INTO pgsched.retention AS r (queue, state, keep, updated_at)
VALUES (%(queue)s::text, %(state)s::pgsched.job_state, make_interval(secs => %(keep_seconds)s::float8),
        coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (queue, state) DO UPDATE SET keep = EXCLUDED.keep, updated_at = EXCLUDED.updated_at
RETURNING r.queue, r.state::text AS state, extract(epoch FROM r.keep)::float8 AS keep_seconds, 'queue' AS source,
          r.updated_at

-- name: retention_unset
-- Remove a queue's own retention for one state (it falls back to the defaults); nothing when it had none.
DELETE FROM pgsched.retention r
 WHERE r.queue = %(queue)s::text AND r.state = %(state)s::pgsched.job_state AND r.queue <> '*'
RETURNING r.queue, r.state::text AS state, extract(epoch FROM r.keep)::float8 AS keep_seconds, 'queue' AS source,
          r.updated_at

-- name: history_horizon_get
-- How far the time partitions of finished jobs reach (width of the newest, how many ahead, the furthest bound), the rows
-- of the default partition (counted up to cap) and the longest retention, for `pgsched doctor` and retention changes.
SELECT (SELECT extract(epoch FROM h.purge_to - h.purge_from)::float8
          FROM pgsched.history_partitions h ORDER BY h.purge_to DESC LIMIT 1) AS width_seconds,
       (SELECT count(*)::int FROM pgsched.history_partitions h
         WHERE h.purge_to > coalesce(%(now)s::timestamptz, now())) AS partitions_ahead,
       (SELECT max(h.purge_to) FROM pgsched.history_partitions h) AS covered_until,
       (SELECT count(*)::int FROM (SELECT 1 FROM pgsched.jobs_done_default d LIMIT %(cap)s::int) d) AS default_rows,
       coalesce(l.keep_seconds, 0) AS longest_keep_seconds, coalesce(l.queue, '*') AS longest_queue,
       coalesce(l.state, 'succeeded') AS longest_state
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (SELECT extract(epoch FROM r.keep)::float8 AS keep_seconds, r.queue, r.state::text AS state
                       FROM pgsched.retention r ORDER BY r.keep DESC, r.queue, r.state LIMIT 1) l ON true
