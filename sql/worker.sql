-- Queries of the worker runtime: liveness, the hot path (claim, finish), waiting marks, cancels.

-- name: worker_register
-- Register a live process in pgsched.workers and return its id (its liveness lock key).
INSERT INTO pgsched.workers (role, host, pid, queues, concurrency, version)
VALUES (%(role)s::text, %(host)s::text, %(pid)s::int, %(queues)s::text[], %(concurrency)s::int, %(version)s::text)
RETURNING id

-- name: worker_lock
-- Take this session's liveness lock on the worker id without waiting; false when another session holds it.
SELECT pg_try_advisory_lock(pgsched.lock_namespace(), %(id)s::int) AS locked

-- name: worker_heartbeat
-- Beat the heartbeat; no row back means the row was deleted and the worker must register again.
UPDATE pgsched.workers SET heartbeat_at = now() WHERE id = %(id)s::bigint RETURNING id

-- name: worker_unregister
-- Remove a worker's row on clean shutdown; its waiting marks go with it.
DELETE FROM pgsched.workers WHERE id = %(id)s::bigint

-- name: worker_wait_mark
-- Mark a worker as waiting on its queues, so the insert trigger sends NOTIFY for them.
INSERT INTO pgsched.waiting_workers (queue, worker_id)
SELECT q.name, %(worker_id)s::bigint FROM unnest(%(queues)s::text[]) AS q(name)
ON CONFLICT DO NOTHING

-- name: worker_wait_clear
-- The worker has a backlog again: stop asking for NOTIFY on its queues.
DELETE FROM pgsched.waiting_workers WHERE worker_id = %(worker_id)s::bigint

-- name: listener_ping
-- Prove the LISTEN connection is alive between notifications.
SELECT 1 AS ok

-- name: job_claim_batch
-- Claim up to n due jobs for one worker (each queue through the claim index), returning only what it runs.
WITH claimed AS MATERIALIZED (
    SELECT c.id
      FROM unnest(%(queues)s::text[]) AS q(name)
     CROSS JOIN LATERAL (
            SELECT j.id, j.priority, j.run_at FROM pgsched.jobs j
             WHERE j.state = 'queued'
               AND j.queue = q.name
               AND j.run_at <= coalesce(%(now)s::timestamptz, now())
             ORDER BY j.priority DESC, j.run_at, j.id
             LIMIT %(limit)s::int
               FOR UPDATE SKIP LOCKED
           ) c
     ORDER BY c.priority DESC, c.run_at, c.id
     LIMIT %(limit)s::int
)
UPDATE pgsched.jobs j
   SET state = 'running',
       attempt = j.attempt + 1,
       worker_id = %(worker_id)s::bigint,
       started_at = coalesce(%(now)s::timestamptz, now())
 WHERE j.id = ANY (ARRAY(SELECT claimed.id FROM claimed))
RETURNING j.id, j.queue, j.task, j.args, j.attempt,
          extract(epoch FROM j.timeout)::float8 AS timeout_seconds,
          extract(epoch FROM j.started_at - j.run_at)::float8 AS waited_seconds

-- name: job_finish_many
-- Record finished attempts in one statement: succeeded (with result), failed (retry after delay, or dead) or cancelled; fenced on (id, attempt, running).
-- Keyed by the join on d.id alone: adding "j.id = ANY(ids)" let a plan made on an empty table scan
-- the whole running set once per id of the batch (O(n²); tests/worker/test_plans.py counts rows).
UPDATE pgsched.jobs j
   SET state = CASE
                 WHEN d.outcome = 'succeeded' THEN 'succeeded'
                 WHEN d.outcome = 'cancelled' THEN 'cancelled'
                 WHEN j.attempt >= j.max_attempts OR d.final THEN 'dead'
                 ELSE 'queued'
               END::pgsched.job_state,
       finished_at = CASE
                       WHEN d.outcome = 'failed' AND j.attempt < j.max_attempts AND NOT d.final THEN NULL
                       ELSE coalesce(%(now)s::timestamptz, now())
                     END,
       run_at = CASE
                  WHEN d.outcome = 'failed' AND j.attempt < j.max_attempts AND NOT d.final
                  THEN coalesce(%(now)s::timestamptz, now()) + make_interval(secs => d.delay)
                  ELSE j.run_at
                END,
       result = CASE WHEN d.outcome = 'succeeded' THEN d.result::jsonb END,
       errors = CASE WHEN d.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(d.error::jsonb) END
  FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(outcomes)s::text[], %(results)s::text[],
              %(errors)s::text[], %(delays)s::float8[], %(finals)s::bool[])
       AS d(id, attempt, outcome, result, error, delay, final)
 WHERE j.id = d.id AND j.attempt = d.attempt AND j.state = 'running'
RETURNING j.id, j.state::text AS state

-- name: job_next_due_in
-- Seconds until the earliest queued job of these queues that is not due yet (NULL when there is none).
SELECT extract(epoch FROM min(j.run_at) - coalesce(%(now)s::timestamptz, now()))::float8 AS seconds
  FROM pgsched.jobs j
 WHERE j.state = 'queued'
   AND j.queue = ANY(%(queues)s::text[])
   AND j.run_at > coalesce(%(now)s::timestamptz, now())

-- name: job_cancel_requested
-- Which of these running jobs have a pending cancel request (the safety net for a missed NOTIFY pgsched_cancel).
-- Driven by the ids (one primary-key probe each), never by the running set: see job_finish_many.
SELECT j.id FROM unnest(%(ids)s::bigint[]) AS r(id)
  JOIN pgsched.jobs j ON j.id = r.id
 WHERE j.state = 'running' AND j.cancel_requested_at IS NOT NULL

-- name: worker_session_setup
-- The worker's own connections: commit without waiting for the WAL flush (a database crash can only make a job run again), and keep one generic plan per prepared statement (planning the claim costs more than running it).
-- A generic plan outlives the statistics it was made from: planned while pgsched.jobs was empty (and analyzed), a sequential scan looks free and stays the plan under a million-row backlog. Every statement of these sessions reaches jobs by a key, so sequential scans are ruled out.
SELECT set_config('synchronous_commit', 'off', false) AS synchronous_commit,
       set_config('plan_cache_mode', 'force_generic_plan', false) AS plan_cache_mode,
       set_config('enable_seqscan', 'off', false) AS enable_seqscan
