-- Queries of result waiting (Pgsched.result): a waiter's row, and the end of the job it waits on.

-- name: result_waiter_add
-- List this session as waiting on a job, so the statements that end jobs send NOTIFY pgsched_done for it.
INSERT INTO pgsched.result_waiters (job_id) VALUES (%(job_id)s::bigint) ON CONFLICT DO NOTHING

-- name: result_waiter_remove
-- This session no longer waits on the job.
DELETE FROM pgsched.result_waiters WHERE job_id = %(job_id)s::bigint AND backend_pid = pg_backend_pid()

-- name: result_get
-- A job's state, result and last error entry: what a result waiter needs to decide (no row: no such job).
SELECT state::text AS state, result, errors -> -1 AS last_error FROM pgsched.jobs WHERE id = %(job_id)s::bigint
