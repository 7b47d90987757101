-- 0002: adaptive NOTIFY. A NOTIFY in every enqueue transaction serialises commits, so workers
-- that ran out of due jobs mark themselves waiting per queue, and the insert trigger notifies
-- only for queues someone is waiting on: busy systems pay nothing, idle workers still wake at once.

CREATE TABLE pgsched.waiting_workers (
    queue      text NOT NULL,
    worker_id  bigint NOT NULL REFERENCES pgsched.workers (id) ON DELETE CASCADE,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, worker_id)
);
COMMENT ON TABLE pgsched.waiting_workers IS 'Workers idle on a queue and listening: the insert trigger sends NOTIFY pgsched_jobs only for queues listed here. A hint only: a stale row costs one needless NOTIFY, polling covers a missing one.';
COMMENT ON COLUMN pgsched.waiting_workers.queue IS 'Queue the worker waits on.';
COMMENT ON COLUMN pgsched.waiting_workers.worker_id IS 'pgsched.workers.id of the waiting worker; the row goes when the worker row goes.';
COMMENT ON COLUMN pgsched.waiting_workers.since IS 'When the worker started waiting.';

CREATE INDEX waiting_workers_worker_idx ON pgsched.waiting_workers (worker_id);

CREATE OR REPLACE FUNCTION pgsched.jobs_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    q text;
BEGIN
    -- Nobody waiting (a busy or stopped system), or the session opted out for a bulk load
    -- (SELECT set_config('pgsched.notify', 'off', false)): no NOTIFY, no scan of the inserted rows.
    IF current_setting('pgsched.notify', true) = 'off' OR NOT EXISTS (SELECT 1 FROM pgsched.waiting_workers) THEN
        RETURN NULL;
    END IF;
    -- Future jobs too: a waiting worker then re-arms its timer for the earliest run_at.
    FOR q IN SELECT DISTINCT n.queue FROM new_jobs n WHERE n.state = 'queued' LOOP
        IF EXISTS (SELECT 1 FROM pgsched.waiting_workers w WHERE w.queue = q) THEN
            PERFORM pg_notify('pgsched_jobs', q);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_notify_insert() IS
    'Sends NOTIFY pgsched_jobs (payload: queue) once per statement and queue of queued jobs (due now or later), only when a worker waits on that queue (pgsched.waiting_workers) and the session has not set pgsched.notify to off.';
