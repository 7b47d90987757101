-- 0018: one NOTIFY per wake-up, not one per insert. A transaction that sends NOTIFY holds one
-- database-wide lock from its pre-commit to the end of its commit (WAL flush included), so while a
-- worker waited on a queue, every enqueue into it notified and concurrent enqueuers committed one at
-- a time (16 clients: 22-65 % of the rate with notifications off). Now the insert trigger takes the
-- waiting marks of the queue (deletes them) and notifies only when it took one; the woken worker marks
-- itself again before it next sleeps. Marks another transaction is taking are skipped, not waited
-- for: that transaction wakes those workers.

CREATE OR REPLACE FUNCTION pgsched.jobs_notify_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
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
        DELETE FROM pgsched.waiting_workers w
         USING (SELECT x.queue, x.worker_id FROM pgsched.waiting_workers x
                 WHERE x.queue = q FOR UPDATE SKIP LOCKED) taken
         WHERE w.queue = taken.queue AND w.worker_id = taken.worker_id;
        IF FOUND THEN
            PERFORM pg_notify('pgsched_jobs', q);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_notify_insert() IS
    'Sends NOTIFY pgsched_jobs (payload: queue) for a statement''s queued jobs (due now or later) when it takes (deletes) the waiting marks of workers on that queue, so one NOTIFY wakes them and later inserts send none until they mark again; marks another transaction is taking are skipped; nothing when the session set pgsched.notify to off.';
COMMENT ON TABLE pgsched.waiting_workers IS
    'Workers idle on a queue and listening. The insert trigger takes (deletes) a queue''s marks when it sends NOTIFY pgsched_jobs for it; a woken worker marks again before it sleeps. A hint only: a stale row costs one needless NOTIFY, polling covers a missing one.';
