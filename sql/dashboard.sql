-- Queries of the dashboard (pgsched.api.dashboard) and of the leader's chart history rollup.
-- Lists select a short preview of args, never the whole document, and page by keyset. A cursor is an index bound in
-- every plan: coalesce(cursor, the end of the range), never "cursor IS NULL OR ...", which a generic plan (psycopg
-- prepares a statement at its fifth use) cannot use as one, and then reads every row above the cursor.

-- name: dashboard_jobs_by_id
-- A page of jobs of any state, newest id first, by queue, task and args containment (ids above a floor); keyset on id (pgsched.job_list).
SELECT id, queue, task, state::text AS state, priority, attempt, max_attempts, run_at, started_at, finished_at,
       created_at, run_key, worker_id, schedule_name, left(args::text, 300) AS args_preview,
       octet_length(args::text) AS args_bytes, left(errors -> -1 ->> 'error', 300) AS last_error
  FROM pgsched.job_list(NULL, %(queue)s::text, %(task)s::text, %(before_id)s::bigint, %(limit)s::int, %(args)s::jsonb,
                        %(floor_id)s::bigint)
 ORDER BY id DESC

-- name: dashboard_jobs_finished
-- A page of jobs of one finished state, latest finish first; keyset on (finished_at, id) (pgsched.dashboard_jobs_finished: jobs_finished_idx).
SELECT id, queue, task, state::text AS state, priority, attempt, max_attempts, run_at, started_at, finished_at,
       created_at, run_key, worker_id, schedule_name, left(args::text, 300) AS args_preview,
       octet_length(args::text) AS args_bytes, left(errors -> -1 ->> 'error', 300) AS last_error
  FROM pgsched.dashboard_jobs_finished(%(state)s::pgsched.job_state, %(queue)s::text, %(task)s::text,
                                       %(after_at)s::timestamptz, %(after_id)s::bigint, %(limit)s::int)
 ORDER BY finished_at DESC, id DESC

-- name: dashboard_jobs_waiting
-- A page of queued jobs in run_at order: due now, or due later; keyset on (run_at, id) (pgsched.dashboard_jobs_waiting: jobs_waiting_idx).
SELECT id, queue, task, state::text AS state, priority, attempt, max_attempts, run_at, started_at, finished_at,
       created_at, run_key, worker_id, schedule_name, left(args::text, 300) AS args_preview,
       octet_length(args::text) AS args_bytes, left(errors -> -1 ->> 'error', 300) AS last_error
  FROM pgsched.dashboard_jobs_waiting(false, %(due)s::boolean, %(later)s::boolean, %(now)s::timestamptz, %(queue)s::text,
                                      %(task)s::text, %(after_at)s::timestamptz, %(after_id)s::bigint, %(limit)s::int)
 ORDER BY run_at, id

-- name: dashboard_jobs_retrying
-- A page of queued jobs that failed before, in run_at order; keyset on (run_at, id) (pgsched.dashboard_jobs_waiting: jobs_retrying_idx, only those).
SELECT id, queue, task, state::text AS state, priority, attempt, max_attempts, run_at, started_at, finished_at,
       created_at, run_key, worker_id, schedule_name, left(args::text, 300) AS args_preview,
       octet_length(args::text) AS args_bytes, left(errors -> -1 ->> 'error', 300) AS last_error
  FROM pgsched.dashboard_jobs_waiting(true, false, false, NULL, %(queue)s::text, %(task)s::text,
                                      %(after_at)s::timestamptz, %(after_id)s::bigint, %(limit)s::int)
 ORDER BY run_at, id

-- name: dashboard_jobs_running
-- Running jobs, longest running first, with seconds elapsed since their attempt started (pgsched.dashboard_jobs_running: jobs_running_idx).
SELECT id, queue, task, state::text AS state, priority, attempt, max_attempts, run_at, started_at, finished_at,
       created_at, run_key, worker_id, schedule_name, left(args::text, 300) AS args_preview,
       octet_length(args::text) AS args_bytes, left(errors -> -1 ->> 'error', 300) AS last_error,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - started_at)::float8 AS elapsed_seconds
  FROM pgsched.dashboard_jobs_running(%(queue)s::text, %(task)s::text, %(worker_id)s::bigint, %(after_at)s::timestamptz,
                                      %(after_id)s::bigint, %(limit)s::int)
 ORDER BY started_at, id

-- name: dashboard_job_id_max
-- The newest job id (the top of the primary key), 0 when there are none.
SELECT coalesce(max(id), 0)::bigint AS id FROM pgsched.jobs

-- name: dashboard_job_by_run_key
-- The job a run key names: the one holding it (pgsched.run_keys), else the newest job with that key (jobs_run_key_idx).
-- The jobs with the key are read apart (MATERIALIZED), then the newest taken: "ORDER BY id DESC LIMIT 1" over them
-- let the planner walk every partition's id index from the top, filtering on the key (the whole table for a key
-- of old jobs, whatever the statistics).
WITH keyed AS MATERIALIZED (
    SELECT j.id FROM pgsched.jobs j WHERE j.run_key = %(run_key)s::text
)
SELECT id FROM (
    SELECT k.job_id AS id, 0 AS rank FROM pgsched.run_keys k
     WHERE k.run_key = %(run_key)s::text AND EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.id = k.job_id)
    UNION ALL
    SELECT max(keyed.id), 1 AS rank FROM keyed HAVING max(keyed.id) IS NOT NULL
) found ORDER BY rank LIMIT 1

-- name: dashboard_retrying_count
-- How many queued jobs have failed at least once (jobs_retrying_idx), counted up to a cap (one more than the cap means "more").
SELECT pgsched.retrying_count(%(cap)s::int) AS n

-- name: dashboard_job_stats
-- Chart series in [since, until) from the minute or the hour rows: finished jobs, failures, latency; one queue or task.
SELECT at, sum(succeeded)::bigint AS succeeded, sum(failed)::bigint AS failed, sum(dead)::bigint AS dead,
       sum(cancelled)::bigint AS cancelled,
       (sum(wait_sum) / nullif(sum(succeeded + dead), 0))::float8 AS wait_avg, max(wait_max)::float8 AS wait_max,
       (sum(run_sum) / nullif(sum(succeeded + dead), 0))::float8 AS run_avg, max(run_max)::float8 AS run_max
  FROM (SELECT minute AS at, queue, task, succeeded, failed, dead, cancelled, wait_sum, wait_max, run_sum, run_max
          FROM pgsched.job_stats_minute
         WHERE NOT %(hourly)s::boolean AND minute >= %(since)s::timestamptz AND minute < %(until)s::timestamptz
        UNION ALL
        SELECT hour, queue, task, succeeded, failed, dead, cancelled, wait_sum, wait_max, run_sum, run_max
          FROM pgsched.job_stats_hour
         WHERE %(hourly)s::boolean AND hour >= %(since)s::timestamptz AND hour < %(until)s::timestamptz) AS rows
 WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(task)s::text IS NULL OR task = %(task)s::text)
 GROUP BY 1
 ORDER BY 1

-- name: job_stats_watermark_lock
-- Lock the rollup watermark for this pass, or get no row when another leader holds it (a paused old leader never blocks the new one); the window (since, upto].
SELECT coalesce(upto, coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(keep)s::float8)) AS since,
       least(coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(settle)s::float8),
             coalesce(upto, coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(keep)s::float8))
             + make_interval(secs => %(span)s::float8)) AS upto,
       coalesce(upto, coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(keep)s::float8))
       + make_interval(secs => %(span)s::float8)
       < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(settle)s::float8) AS behind,
       coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(keep)s::float8) AS keep_from
  FROM pgsched.job_stats_watermark
   FOR UPDATE SKIP LOCKED

-- name: job_stats_rollup
-- Add jobs finished in (since, upto] to their minute and hour rows, reading only those jobs through jobs_finished_idx.
-- Per job: an empty errors array (most jobs) is not expanded, and the seconds are date_part's float8 (extract's numeric
-- reaches float8 through its text form).
WITH fresh AS (
    SELECT date_trunc('minute', j.finished_at, 'UTC') AS minute, j.queue, j.task,
           count(*) FILTER (WHERE j.state = 'succeeded') AS succeeded,
           coalesce(sum((SELECT count(*)  -- a snooze or cancel is no failure
                           FROM jsonb_array_elements(CASE WHEN j.errors <> '[]' THEN j.errors END) AS x
                          WHERE coalesce(x ->> 'kind', 'exception') NOT IN ('snooze', 'cancel'))), 0) AS failed,
           count(*) FILTER (WHERE j.state = 'dead') AS dead,
           count(*) FILTER (WHERE j.state = 'cancelled') AS cancelled,
           coalesce(sum(greatest(date_part('epoch', j.started_at - j.run_at), 0)) FILTER (WHERE j.state <> 'cancelled'), 0) AS wait_sum,
           coalesce(max(greatest(date_part('epoch', j.started_at - j.run_at), 0)) FILTER (WHERE j.state <> 'cancelled'), 0) AS wait_max,
           coalesce(sum(greatest(date_part('epoch', j.finished_at - j.started_at), 0)) FILTER (WHERE j.state <> 'cancelled'), 0) AS run_sum,
           coalesce(max(greatest(date_part('epoch', j.finished_at - j.started_at), 0)) FILTER (WHERE j.state <> 'cancelled'), 0) AS run_max
      FROM pgsched.jobs j
     WHERE j.state IN ('succeeded', 'dead', 'cancelled')
       AND j.finished_at > %(since)s::timestamptz
       AND j.finished_at <= %(upto)s::timestamptz
     GROUP BY 1, 2, 3
), by_minute AS (
    INSERT INTO pgsched.job_stats_minute AS s
           (minute, queue, task, succeeded, failed, dead, cancelled, wait_sum, wait_max, run_sum, run_max)
    SELECT * FROM fresh
    ON CONFLICT (minute, queue, task) DO UPDATE SET
        succeeded = s.succeeded + EXCLUDED.succeeded, failed = s.failed + EXCLUDED.failed,
        dead = s.dead + EXCLUDED.dead, cancelled = s.cancelled + EXCLUDED.cancelled,
        wait_sum = s.wait_sum + EXCLUDED.wait_sum, wait_max = greatest(s.wait_max, EXCLUDED.wait_max),
        run_sum = s.run_sum + EXCLUDED.run_sum, run_max = greatest(s.run_max, EXCLUDED.run_max)
    RETURNING 1
), by_hour AS (
    INSERT INTO pgsched.job_stats_hour AS s
           (hour, queue, task, succeeded, failed, dead, cancelled, wait_sum, wait_max, run_sum, run_max)
    SELECT date_trunc('hour', minute, 'UTC'), queue, task, sum(succeeded), sum(failed), sum(dead), sum(cancelled),
           sum(wait_sum), max(wait_max), sum(run_sum), max(run_max)
      FROM fresh GROUP BY 1, 2, 3
    ON CONFLICT (hour, queue, task) DO UPDATE SET
        succeeded = s.succeeded + EXCLUDED.succeeded, failed = s.failed + EXCLUDED.failed,
        dead = s.dead + EXCLUDED.dead, cancelled = s.cancelled + EXCLUDED.cancelled,
        wait_sum = s.wait_sum + EXCLUDED.wait_sum, wait_max = greatest(s.wait_max, EXCLUDED.wait_max),
        run_sum = s.run_sum + EXCLUDED.run_sum, run_max = greatest(s.run_max, EXCLUDED.run_max)
    RETURNING 1
)
SELECT (SELECT count(*) FROM by_minute)::int AS minutes, (SELECT count(*) FROM by_hour)::int AS hours

-- name: job_stats_watermark_set
-- Record how far the rollup has counted.
UPDATE pgsched.job_stats_watermark SET upto = %(upto)s::timestamptz

-- name: job_stats_prune
-- Drop chart history older than the keep window, oldest first in primary-key order (a few rows per pass).
WITH old_minutes AS (
    SELECT minute, queue, task FROM pgsched.job_stats_minute
     WHERE minute < %(before)s::timestamptz ORDER BY minute LIMIT %(limit)s::int
), old_hours AS (
    SELECT hour, queue, task FROM pgsched.job_stats_hour
     WHERE hour < %(before)s::timestamptz ORDER BY hour LIMIT %(limit)s::int
), minutes AS (
    DELETE FROM pgsched.job_stats_minute m USING old_minutes o
     WHERE (m.minute, m.queue, m.task) = (o.minute, o.queue, o.task)
)
DELETE FROM pgsched.job_stats_hour h USING old_hours o WHERE (h.hour, h.queue, h.task) = (o.hour, o.queue, o.task)

-- name: dashboard_jobs_labelled
-- A page of jobs holding every tag given, else whose meta contains the object given, newest id first; keyset on id (pgsched.job_list_labelled: the label indexes).
SELECT id, queue, task, state::text AS state, priority, attempt, max_attempts, run_at, started_at, finished_at,
       created_at, run_key, worker_id, schedule_name, left(args::text, 300) AS args_preview,
       octet_length(args::text) AS args_bytes, left(errors -> -1 ->> 'error', 300) AS last_error, tags
  FROM pgsched.job_list_labelled(%(tags)s::text[], %(meta)s::jsonb, NULL, %(queue)s::text, %(task)s::text,
                                 %(before_id)s::bigint, %(limit)s::int)
 ORDER BY id DESC
