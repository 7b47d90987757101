-- 0011: a task steers its own fate, reports progress and extends its own lease (issue 22, items 2 and 4).
--
-- Snooze: the attempt is given back and the job runs again later; jobs.snoozes counts the snoozes, and
-- past the task's cap the job is dead. Progress (fraction and message) is written by a small per-worker
-- writer at most once a second per job, fenced on the claim's lease like every write of an attempt.
-- A heartbeat extends the job's own lease: extended_until holds only for the claim whose token is in
-- extended_lease (a new claim has a new token, so an old extension never leaks into a later attempt),
-- and the reaper (job_reap_lost) then rescues the job once that time has passed even while its worker
-- beats, and does not rescue it for a stale worker heartbeat before then. Nothing is added to the claim.

ALTER TABLE pgsched.jobs
    ADD COLUMN snoozes integer NOT NULL DEFAULT 0,
    ADD COLUMN progress real,
    ADD COLUMN progress_message text,
    ADD COLUMN progress_at timestamptz,
    ADD COLUMN extended_lease bigint,
    ADD COLUMN extended_until timestamptz;
COMMENT ON COLUMN pgsched.jobs.snoozes IS 'Times the task snoozed the job (Snooze: run again later without spending an attempt); past the task''s max_snoozes the job is dead.';
COMMENT ON COLUMN pgsched.jobs.progress IS 'Last progress the task reported (current_job().progress), a fraction from 0 to 1; NULL when it never did.';
COMMENT ON COLUMN pgsched.jobs.progress_message IS 'Message of the last progress report.';
COMMENT ON COLUMN pgsched.jobs.progress_at IS 'When the last progress report was written (reports are written at most once a second per job).';
COMMENT ON COLUMN pgsched.jobs.extended_lease IS 'Lease token (jobs.lease) of the attempt that last called heartbeat(); extended_until holds only while it equals jobs.lease.';
COMMENT ON COLUMN pgsched.jobs.extended_until IS 'The attempt holding extended_lease promised its next heartbeat by then: the reaper leaves it alone until then, even if its worker''s heartbeat is stale, and rescues it after (kind lease_expired), even if its worker beats.';

ALTER TABLE pgsched.jobs ADD CONSTRAINT jobs_progress_range CHECK (progress IS NULL OR (progress >= 0 AND progress <= 1));

CREATE OR REPLACE VIEW pgsched.running AS
SELECT j.id, j.queue, j.task, j.attempt, j.max_attempts, j.worker_id, w.host, w.pid,
       j.started_at, now() - j.started_at AS running_for, j.timeout, j.cancel_requested_at,
       j.progress, j.progress_message, j.progress_at,
       CASE WHEN j.extended_lease = j.lease THEN j.extended_until END AS lease_until
  FROM pgsched.jobs j
  LEFT JOIN pgsched.workers w ON w.id = j.worker_id
 WHERE j.state = 'running';
COMMENT ON COLUMN pgsched.running.progress IS 'Last progress the task reported (0 to 1).';
COMMENT ON COLUMN pgsched.running.progress_message IS 'Message of the last progress report.';
COMMENT ON COLUMN pgsched.running.progress_at IS 'When the last progress report was written.';
COMMENT ON COLUMN pgsched.running.lease_until IS 'Set once the attempt called heartbeat(): it must beat again by then or the reaper rescues it.';
