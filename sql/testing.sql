-- Queries of pgsched.testing only (drain in a test process; never on a worker's path).

-- name: testing_drain_pending
-- Whether a drain still has work: a job of its queues due now, or one running under its worker.
SELECT EXISTS (SELECT 1 FROM pgsched.jobs j
                WHERE j.state = 'queued' AND j.queue = ANY(%(queues)s::text[]) AND j.run_at <= now())
    OR EXISTS (SELECT 1 FROM pgsched.jobs j
                WHERE j.state = 'running' AND j.worker_id = %(worker_id)s::bigint) AS pending

-- name: testing_outcomes
-- The jobs a drain ran, as they ended: state, result and last error.
SELECT j.id, j.task, j.state::text AS state, j.attempt, j.result, j.errors -> -1 ->> 'error' AS error
  FROM pgsched.jobs j
 WHERE j.id = ANY(%(ids)s::bigint[])
