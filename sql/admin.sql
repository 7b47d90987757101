-- name: job_update
-- Change run_at / priority / args / queue of a queued job (NULL keeps the value); nothing when not queued.
UPDATE pgsched.jobs
   SET run_at = coalesce(%(run_at)s::timestamptz, run_at),
       priority = coalesce(%(priority)s::smallint, priority),
       args = coalesce(%(args)s::jsonb, args),
       queue = coalesce(%(queue)s::text, queue)
 WHERE id = %(id)s::bigint AND state = 'queued'
RETURNING *

-- name: job_state_get
-- The state of one job, to explain why an update did nothing.
SELECT state::text AS state FROM pgsched.job_get(%(id)s::bigint)

-- name: dead_retry_many
-- Queue dead jobs to run now (optionally of one queue / task); grants one more attempt each. Their run keys are taken
-- first, in key order, as every enqueue takes them (pgsched.run_keys_take: no deadlock with a batch enqueue, a stale
-- holder taken over): a dead job whose key another job holds stays dead, and of dead jobs sharing a key one comes
-- back (the key's holder, else the newest). The insert-or-redrive trigger then finds each key held.
WITH dead AS MATERIALIZED (
    SELECT j.id, j.run_key, j.run_key_scope, j.run_key_period
      FROM pgsched.jobs j
     WHERE j.state = 'dead'
       AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
       AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
     ORDER BY j.run_key, j.id = (SELECT k.job_id FROM pgsched.run_keys k WHERE k.run_key = j.run_key) DESC NULLS LAST,
              j.id DESC
), taken AS MATERIALIZED (
    SELECT t.job_id FROM pgsched.run_keys_take(
        ARRAY(SELECT d.run_key FROM dead d), ARRAY(SELECT d.id FROM dead d), ARRAY(SELECT d.run_key_scope FROM dead d),
        ARRAY(SELECT d.run_key_period FROM dead d), '{}', '{}', '{}', '{}', %(now)s::timestamptz) AS t
     WHERE t.holder IS NULL
)
UPDATE pgsched.jobs j
   SET state = 'queued', run_at = coalesce(%(now)s::timestamptz, now()), finished_at = NULL,
       cancel_requested_at = NULL, max_attempts = greatest(j.max_attempts, j.attempt + 1)
  FROM dead d
 WHERE j.id = d.id AND j.state = 'dead'
   AND (d.run_key IS NULL OR d.id IN (SELECT taken.job_id FROM taken))
RETURNING j.id

-- name: dead_purge
-- Delete dead jobs (optionally of one queue / task, or finished before a time); returns how many.
WITH gone AS (
    DELETE FROM pgsched.jobs j
     WHERE j.state = 'dead'
       AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
       AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
       AND (%(before)s::timestamptz IS NULL OR j.finished_at < %(before)s::timestamptz)
    RETURNING 1
)
SELECT count(*)::bigint AS purged FROM gone

-- name: queue_counts_refresh
-- Leader: write every queue's counts into pgsched.queue_counts from the live jobs (jobs_queued, jobs_running), the history counters and the jobs finished after their watermark (queues without jobs are dropped); never reads the rest of the history.
WITH live AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.state = 'queued' AND j.run_at <= coalesce(%(now)s::timestamptz, now())) AS due,
           count(*) FILTER (WHERE j.state = 'queued' AND j.run_at > coalesce(%(now)s::timestamptz, now())) AS scheduled,
           count(*) FILTER (WHERE j.state = 'running') AS running,
           0::bigint AS succeeded, 0::bigint AS dead, 0::bigint AS cancelled,
           min(j.run_at) FILTER (WHERE j.state = 'queued' AND j.run_at <= coalesce(%(now)s::timestamptz, now()))
               AS oldest_due_at
      FROM pgsched.jobs j
     WHERE j.state IN ('waiting', 'queued', 'running')
     GROUP BY j.queue
),
finished AS (
    SELECT c.queue, c.state, c.jobs FROM pgsched.history_counts c
    UNION ALL
    SELECT f.queue, f.state, f.jobs
      FROM pgsched.history_count_watermark w
     CROSS JOIN LATERAL pgsched.history_finished_between(w.upto, 'infinity') f
),
counted AS (
    SELECT queue, sum(due)::bigint AS due, sum(scheduled)::bigint AS scheduled, sum(running)::bigint AS running,
           sum(succeeded)::bigint AS succeeded, sum(dead)::bigint AS dead, sum(cancelled)::bigint AS cancelled,
           min(oldest_due_at) AS oldest_due_at
      FROM (SELECT * FROM live
            UNION ALL
            SELECT f.queue, 0, 0, 0,
                   sum(f.jobs) FILTER (WHERE f.state = 'succeeded'), sum(f.jobs) FILTER (WHERE f.state = 'dead'),
                   sum(f.jobs) FILTER (WHERE f.state = 'cancelled'), NULL
              FROM finished f
             GROUP BY f.queue) u
     GROUP BY queue
),
gone AS (
    DELETE FROM pgsched.queue_counts c WHERE NOT EXISTS (SELECT 1 FROM counted WHERE counted.queue = c.queue)
)
INSERT INTO pgsched.queue_counts AS c
       (queue, due, scheduled, running, succeeded, dead, cancelled, oldest_due_at, counted_at)
SELECT queue, due, scheduled, running, coalesce(succeeded, 0), coalesce(dead, 0), coalesce(cancelled, 0),
       oldest_due_at, coalesce(%(now)s::timestamptz, now())
  FROM counted
ON CONFLICT (queue) DO UPDATE SET
    due = EXCLUDED.due, scheduled = EXCLUDED.scheduled, running = EXCLUDED.running,
    succeeded = EXCLUDED.succeeded, dead = EXCLUDED.dead, cancelled = EXCLUDED.cancelled,
    oldest_due_at = EXCLUDED.oldest_due_at, counted_at = EXCLUDED.counted_at
