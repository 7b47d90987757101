-- Queries of result waiting (Pgsched.result): a waiter's row, and the end of the job it waits on.

-- name: result_waiter_watch
-- List a listening session as waiting on a job (so the statements that end it send NOTIFY pgsched_done) and read the job, in one round trip.
WITH listed AS (
    INSERT INTO pgsched.result_waiters (job_id, backend_pid)
    VALUES (%(job_id)s::bigint, %(backend_pid)s::int)
    ON CONFLICT DO NOTHING
)
SELECT state::text AS state, result, errors -> -1 AS last_error FROM pgsched.job_get(%(job_id)s::bigint)

-- name: result_waiters_add
-- List a listening session (after a reconnect) as waiting on every job its client still waits on.
INSERT INTO pgsched.result_waiters (job_id, backend_pid)
SELECT j, %(backend_pid)s::int FROM unnest(%(job_ids)s::bigint[]) AS j
ON CONFLICT DO NOTHING

-- name: result_waiter_remove
-- No wait of this listening session is left on the job.
DELETE FROM pgsched.result_waiters WHERE job_id = %(job_id)s::bigint AND backend_pid = %(backend_pid)s::int

-- name: result_get
-- A job's state, result and last error entry: what a result waiter needs to decide (no row: no such job).
SELECT state::text AS state, result, errors -> -1 AS last_error FROM pgsched.job_get(%(job_id)s::bigint)
