-- 0003: pgsched.retry wakes a waiting worker at once (adaptive, like the insert trigger),
-- instead of leaving the job to the next poll.

CREATE OR REPLACE FUNCTION pgsched.retry(job_id bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    current pgsched.job_state;
    job_queue text;
BEGIN
    SELECT j.state, j.queue INTO current, job_queue FROM pgsched.jobs j WHERE j.id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgsched.retry: job % does not exist', job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF current = 'running' THEN
        RAISE EXCEPTION 'pgsched.retry: job % is running; cancel it first', job_id USING ERRCODE = 'object_in_use';
    END IF;
    UPDATE pgsched.jobs j
       SET state = 'queued', run_at = now(), finished_at = NULL, cancel_requested_at = NULL,
           max_attempts = greatest(j.max_attempts, j.attempt + 1)
     WHERE j.id = job_id;
    IF current_setting('pgsched.notify', true) IS DISTINCT FROM 'off'
       AND EXISTS (SELECT 1 FROM pgsched.waiting_workers w WHERE w.queue = job_queue) THEN
        PERFORM pg_notify('pgsched_jobs', job_queue);
    END IF;
    RETURN job_id;
END $$;
COMMENT ON FUNCTION pgsched.retry(bigint) IS
    'Queue a job to run now (dead, cancelled, succeeded or waiting); grants one more attempt if it was out of attempts; wakes a worker waiting on its queue.';
