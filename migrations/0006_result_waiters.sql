-- 0006: waiting on a job's result. A waiter (Pgsched.result) LISTENs on pgsched_done and lists
-- itself here; the statements that end jobs send NOTIFY pgsched_done (payload: job id) only for
-- jobs someone waits on, so a busy queue nobody waits on pays one empty-table probe per statement.

CREATE TABLE pgsched.result_waiters (
    job_id       bigint NOT NULL,
    backend_pid  integer NOT NULL DEFAULT pg_backend_pid(),
    since        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, backend_pid)
);
-- No foreign key to pgsched.jobs: a job may be pruned while someone waits, and the finish statement
-- must not take a key-share lock on the waiter's row.
COMMENT ON TABLE pgsched.result_waiters IS 'Sessions waiting on the end of a job (LISTEN pgsched_done): a job ending as succeeded, dead or cancelled sends NOTIFY pgsched_done (payload: job id) only when listed here. A hint only: waiters re-read the job now and then; rows of sessions that are gone are deleted by the leader''s pruner.';
COMMENT ON COLUMN pgsched.result_waiters.job_id IS 'pgsched.jobs.id waited on (no foreign key: the job may be pruned meanwhile).';
COMMENT ON COLUMN pgsched.result_waiters.backend_pid IS 'Server process id of the waiting session (pg_backend_pid()); a row whose pid is not in pg_stat_activity is stale.';
COMMENT ON COLUMN pgsched.result_waiters.since IS 'When the session started waiting.';

-- Cancelling a queued job ends it at once: tell its waiters, like the finish statement does.
CREATE OR REPLACE FUNCTION pgsched.cancel(job_id bigint) RETURNS pgsched.job_state LANGUAGE plpgsql AS $$
DECLARE
    current pgsched.job_state;
BEGIN
    SELECT j.state INTO current FROM pgsched.jobs j WHERE j.id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgsched.cancel: job % does not exist', job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF current = 'queued' THEN
        UPDATE pgsched.jobs SET state = 'cancelled', finished_at = now() WHERE id = job_id;
        IF EXISTS (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = cancel.job_id) THEN
            PERFORM pg_notify('pgsched_done', job_id::text);
        END IF;
        RETURN 'cancelled';
    ELSIF current = 'running' THEN
        UPDATE pgsched.jobs SET cancel_requested_at = coalesce(cancel_requested_at, now()) WHERE id = job_id;
        PERFORM pg_notify('pgsched_cancel', job_id::text);
        RETURN 'running';
    ELSE
        RAISE EXCEPTION 'pgsched.cancel: job % already finished (%)', job_id, current USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END $$;
COMMENT ON FUNCTION pgsched.cancel(bigint) IS 'Cancel a job: a queued job at once (NOTIFY pgsched_done when a result waiter waits on it); a running job is signalled (NOTIFY pgsched_cancel) and its worker stops it. Returns the state after the call.';
