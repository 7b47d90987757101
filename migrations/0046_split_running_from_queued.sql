-- 0046: running jobs get a partition of their own (issue 20: at most one dead tuple per job on the claim path).
-- pgsched.jobs was partitioned by state into jobs_live (waiting, queued, running) and jobs_done (time partitions). A
-- job's claim and its finish were then two non-HOT changes of one jobs_live row: every drained job left two dead
-- tuples (and two dead entries in each index) in the table the claim scans. Now:
--   jobs_queued  (waiting, queued): jobs_live renamed, with its pages, claim indexes and settings;
--   jobs_running (running): the claimed jobs;
--   jobs_done    (succeeded, dead, cancelled): unchanged.
-- The claim moves a job from jobs_queued to jobs_running (one dead tuple in jobs_queued), its finish from
-- jobs_running to jobs_done (one in jobs_running), a retry or a reaped job back to jobs_queued.
-- A statement that locks or changes a job another transaction has moved since its snapshot fails with 40001
-- ("already moved to another partition"); pgsched's statements run again (db.execute_moving in Python,
-- pgsched.moved_again() in the functions below).
-- Lock: ACCESS EXCLUSIVE on pgsched.jobs while jobs_queued is scanned once (the attach's check).

SET LOCAL pgsched.notify = 'off';

ALTER TABLE pgsched.jobs DETACH PARTITION pgsched.jobs_live;
ALTER TABLE pgsched.jobs_live RENAME TO jobs_queued;
DO $$
DECLARE
    i record;
BEGIN
    FOR i IN SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
              WHERE x.indrelid = 'pgsched.jobs_queued'::regclass AND c.relname LIKE 'jobs\_live\_%' LOOP
        EXECUTE format('ALTER INDEX pgsched.%I RENAME TO %I', i.relname, 'jobs_queued_' || substr(i.relname, length('jobs_live_') + 1));
    END LOOP;
END $$;
COMMENT ON TABLE pgsched.jobs_queued IS 'Partition of pgsched.jobs: waiting and queued jobs (the claim scans only it; a claim moves its jobs to jobs_running).';

-- The running set: the same columns and settings, its rows copied while jobs_queued is detached (so no trigger fires).
CREATE TABLE pgsched.jobs_running PARTITION OF pgsched.jobs (PRIMARY KEY (id))
    FOR VALUES IN ('running')
    WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.05,
          autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0, vacuum_truncate = false);
COMMENT ON TABLE pgsched.jobs_running IS 'Partition of pgsched.jobs: running jobs (a claim moves them here from jobs_queued; a finish moves them on to jobs_done, a retry back to jobs_queued).';
ALTER TABLE pgsched.jobs_running DISABLE TRIGGER USER;
INSERT INTO pgsched.jobs_running SELECT * FROM pgsched.jobs_queued WHERE state = 'running';
ALTER TABLE pgsched.jobs_running ENABLE TRIGGER USER;
DELETE FROM pgsched.jobs_queued WHERE state = 'running';

-- Per-column statistics targets as jobs_queued has them (0031).
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT attname, attstattarget FROM pg_attribute
              WHERE attrelid = 'pgsched.jobs_queued'::regclass AND attnum > 0 AND NOT attisdropped
                AND attstattarget IS NOT NULL AND attstattarget >= 0 LOOP
        EXECUTE format('ALTER TABLE pgsched.jobs_running ALTER COLUMN %I SET STATISTICS %s', a.attname, a.attstattarget);
    END LOOP;
END $$;

-- The running set's indexes move with it; jobs_running_queue_idx is made after jobs_running_idx, as in 0043.
DROP INDEX pgsched.jobs_running_idx;
DROP INDEX pgsched.jobs_running_queue_idx;
CREATE INDEX jobs_running_idx ON pgsched.jobs_running (worker_id, lease) WITH (deduplicate_items = off)
 WHERE state = 'running';
COMMENT ON INDEX pgsched.jobs_running_idx IS 'Running jobs per worker, in lease order (no deduplication: each entry of a job that left is marked dead on its own): the reaper and the reconcile read it.';
CREATE INDEX jobs_running_queue_idx ON pgsched.jobs_running (queue, concurrency_key)
    WHERE state = 'running' AND queue IS NOT NULL;
COMMENT ON INDEX pgsched.jobs_running_queue_idx IS
    'Running jobs per queue and concurrency key: the limited claim counts them up to the queue''s or the key''s limit.';

ALTER TABLE pgsched.jobs ATTACH PARTITION pgsched.jobs_queued FOR VALUES IN ('waiting', 'queued');

COMMENT ON TABLE pgsched.jobs IS 'Every job, live or finished: partitioned by state into jobs_queued (waiting, queued: the claim''s table), jobs_running (running) and jobs_done (succeeded, dead, cancelled), itself partitioned by purge_at into time partitions that retention drops whole. Insert into and read from this name. id comes from its sequence; it has no unique index across partitions.';
COMMENT ON FUNCTION pgsched.dashboard_jobs_running(text, text, bigint, timestamptz, bigint, integer) IS 'A page of running jobs, longest running first, after the cursor (p_after_at, p_after_id): the running set read through jobs_running_idx, whatever the statistics.';
COMMENT ON FUNCTION pgsched.job_get(bigint) IS 'One job by id, wherever it lives (jobs_queued, jobs_running, a time partition, jobs_done_default): the one by-id read of every caller (API, CLI, result(), run-key holders). Its plan is generic and cached per server session, so a call does not plan every partition again.';

-- The one rule for a statement that met a job moved by another transaction (40001): run it again under READ
-- COMMITTED, where the next statement sees the move; under a transaction snapshot it would meet it again, so fail.
CREATE FUNCTION pgsched.moved_again(p_tries integer) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
    SELECT p_tries < 10 AND current_setting('transaction_isolation') = 'read committed'
$$;
COMMENT ON FUNCTION pgsched.moved_again(integer) IS 'In an exception handler for serialization_failure: whether a statement that met a job another transaction moved to another partition (a claim, a finish, a retry) may run again (READ COMMITTED, fewer than 10 tries); else the handler raises it again.';

CREATE OR REPLACE FUNCTION pgsched.cancel(job_id bigint) RETURNS pgsched.job_state
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    current pgsched.job_state;
    tries integer := 0;
BEGIN
    LOOP
        BEGIN
            SELECT j.state INTO current FROM pgsched.jobs j WHERE j.id = job_id FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'pgsched.cancel: job % does not exist', job_id USING ERRCODE = 'no_data_found';
            END IF;
            IF current IN ('queued', 'waiting') THEN
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
        EXCEPTION WHEN serialization_failure THEN
            -- A claim (or a finish) moved the job since this statement's snapshot: judge it again where it is now.
            IF NOT pgsched.moved_again(tries) THEN
                RAISE;
            END IF;
            tries := tries + 1;
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION pgsched.cancel(job_id bigint) IS 'Cancel a job: a queued or waiting job at once (NOTIFY pgsched_done when a result waiter waits on it); a running job is signalled (NOTIFY pgsched_cancel) and its worker stops it. Returns the state after the call. A job a worker claims meanwhile is judged again where it moved (pgsched.moved_again).';

CREATE OR REPLACE FUNCTION pgsched.run_key_take(p_run_key text, p_job_id bigint, p_scope text DEFAULT 'retention', p_period interval DEFAULT NULL,
                                                p_on_conflict text DEFAULT 'existing', p_args jsonb DEFAULT NULL,
                                                p_run_at timestamptz DEFAULT NULL, p_priority integer DEFAULT NULL,
                                                p_now timestamptz DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    v_at timestamptz := coalesce(p_now, now());
    v_scope text := coalesce(p_scope, CASE WHEN p_period IS NULL THEN 'retention' ELSE 'period' END);
    v_until timestamptz;
    holder bigint;
    holder_scope text;
    holder_until timestamptz;
    holder_state pgsched.job_state;
    replaced boolean;
    tries integer := 0;
BEGIN
    IF p_run_key IS NULL OR p_job_id IS NULL THEN
        RAISE EXCEPTION 'pgsched.run_key_take: run_key and job_id are required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_scope NOT IN ('active', 'period', 'retention') THEN
        RAISE EXCEPTION 'pgsched: run_key_scope must be active, period or retention, got %', quote_literal(v_scope)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (v_scope = 'period') <> (p_period IS NOT NULL) OR p_period <= interval '0' THEN
        RAISE EXCEPTION 'pgsched: run_key_period must be a positive interval, given with (and only with) run_key_scope period'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_on_conflict IS NULL OR p_on_conflict NOT IN ('existing', 'replace') THEN
        RAISE EXCEPTION 'pgsched: on_conflict must be existing or replace, got %', coalesce(quote_literal(p_on_conflict), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_scope = 'period' THEN
        v_until := v_at + p_period;
    END IF;
    LOOP
        INSERT INTO pgsched.run_keys AS k (run_key, job_id, scope, held_until, created_at)
        VALUES (p_run_key, p_job_id, v_scope, v_until, v_at)
        ON CONFLICT (run_key) DO NOTHING;
        IF FOUND THEN
            RETURN NULL;
        END IF;
        -- Held (or being taken) by another transaction's job: wait for its row lock, then judge the holder
        -- in statements that see what was committed by then.
        SELECT k.job_id, k.scope, k.held_until INTO holder, holder_scope, holder_until
          FROM pgsched.run_keys k WHERE k.run_key = p_run_key FOR UPDATE;
        CONTINUE WHEN NOT FOUND;  -- pruned in between: insert again
        IF holder = p_job_id THEN
            RETURN NULL;
        END IF;
        IF NOT pgsched.run_key_stale(holder_scope, holder_until, holder, v_at) THEN
            IF p_on_conflict = 'existing' THEN
                RETURN holder;
            END IF;
            SELECT j.state INTO holder_state FROM pgsched.jobs j WHERE j.id = holder;
            IF holder_state IN ('waiting', 'queued') THEN
                -- Debounce: the holder has not started, so it takes the new args and run_at (and priority).
                BEGIN
                    UPDATE pgsched.jobs j
                       SET args = coalesce(p_args, j.args), run_at = coalesce(p_run_at, v_at),
                           priority = coalesce(p_priority::smallint, j.priority)
                     WHERE j.id = holder AND j.state IN ('waiting', 'queued');
                    replaced := FOUND;
                EXCEPTION WHEN serialization_failure THEN
                    -- A worker claimed it in between (moved it to jobs_running): judge it again.
                    IF NOT pgsched.moved_again(tries) THEN
                        RAISE;
                    END IF;
                    tries := tries + 1;
                    replaced := false;
                END;
                IF replaced THEN
                    RETURN holder;
                END IF;
                CONTINUE;  -- a worker claimed it in between: judge it again
            ELSIF holder_state IS DISTINCT FROM 'running' THEN
                RETURN holder;  -- finished but still holding (retention or period): nothing to replace
            END IF;
            -- running: a new job takes the key
        END IF;
        UPDATE pgsched.run_keys k
           SET job_id = p_job_id, scope = v_scope, held_until = v_until, created_at = v_at
         WHERE k.run_key = p_run_key;
        RETURN NULL;
    END LOOP;
END $$;

-- A job moving between jobs_queued and jobs_running (a claim, a retry, a reaped job) arrives in its new partition by an
-- INSERT, which fires jobs_run_key_hold there: it keeps its key as it is. Taking it again would lock the key's row
-- while the job's row is locked (a deadlock with an enqueue replacing the job, which locks them in the other order),
-- and a job retried after a replacing enqueue gave its key to a new job would fail with unique_violation.
CREATE FUNCTION pgsched.jobs_run_key_moving() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    PERFORM set_config('pgsched.live_move', NEW.id::text, true);
    RETURN NEW;
END $$;
COMMENT ON FUNCTION pgsched.jobs_run_key_moving() IS 'BEFORE UPDATE OF state of a job with a run key moving between jobs_queued and jobs_running: marks it (pgsched.live_move) so jobs_run_key_hold, fired by its arrival in the other partition, leaves its key as it is.';
CREATE TRIGGER jobs_run_key_moving BEFORE UPDATE OF state ON pgsched.jobs
    FOR EACH ROW WHEN (NEW.run_key IS NOT NULL
                       AND OLD.state IN ('waiting', 'queued', 'running') AND NEW.state IN ('waiting', 'queued', 'running')
                       AND (OLD.state = 'running') <> (NEW.state = 'running'))
    EXECUTE FUNCTION pgsched.jobs_run_key_moving();

CREATE OR REPLACE FUNCTION pgsched.jobs_run_key_hold() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    holder bigint;
BEGIN
    IF TG_OP = 'INSERT' AND current_setting('pgsched.live_move', true) = NEW.id::text THEN
        -- A move between jobs_queued and jobs_running (jobs_run_key_moving): the key stays as it is.
        PERFORM set_config('pgsched.live_move', '', true);
        RETURN NEW;
    END IF;
    IF NEW.run_key_scope IS NULL THEN
        NEW.run_key_scope := CASE WHEN NEW.run_key_period IS NULL THEN 'retention' ELSE 'period' END;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.run_key IS DISTINCT FROM NEW.run_key THEN
        DELETE FROM pgsched.run_keys k WHERE k.run_key = OLD.run_key AND k.job_id = OLD.id;
    END IF;
    -- A finished row arriving (a row moving to a partition of finished jobs) takes nothing.
    IF NEW.state NOT IN ('waiting', 'queued', 'running') THEN
        RETURN NEW;
    END IF;
    -- Taken already: by the enqueue that inserts it (pgsched.enqueue, the client) or kept by this job.
    PERFORM FROM pgsched.run_keys k WHERE k.run_key = NEW.run_key AND k.job_id = NEW.id FOR UPDATE;
    IF FOUND THEN
        RETURN NEW;
    END IF;
    holder := pgsched.run_key_take(NEW.run_key, NEW.id, NEW.run_key_scope, NEW.run_key_period);
    IF holder IS NOT NULL THEN
        RAISE EXCEPTION 'duplicate run_key %: job % holds it', quote_literal(NEW.run_key), holder
            USING ERRCODE = 'unique_violation', SCHEMA = 'pgsched', TABLE = 'jobs', COLUMN = 'run_key',
                  CONSTRAINT = 'run_keys_pkey', DETAIL = format('Key (run_key)=(%s) already exists.', NEW.run_key),
                  HINT = 'pgsched.enqueue(..., run_key => ...) returns the holder''s id instead of failing.';
    END IF;
    RETURN NEW;
END $$;

-- The workflow functions meet moved jobs too: a dependency or a step claimed since the statement's snapshot.
CREATE OR REPLACE FUNCTION pgsched.workflow_add(workflow_id bigint, task text, args jsonb DEFAULT '{}'::jsonb, depends_on bigint[] DEFAULT '{}'::bigint[], on_failure text DEFAULT 'cancel'::text, queue text DEFAULT 'default'::text, priority integer DEFAULT 0, max_attempts integer DEFAULT NULL::integer, timeout interval DEFAULT NULL::interval, results_arg text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
#variable_conflict use_variable
DECLARE
    new_id bigint;
    wf bigint := workflow_id;
    found_deps integer;
    open_deps integer;
    blocker bigint;
    blocker_state text;
    tries integer := 0;
BEGIN
    IF wf IS NULL THEN
        wf := pgsched.workflow_create('', 'after');
    ELSIF NOT EXISTS (SELECT 1 FROM pgsched.workflows w WHERE w.id = wf) THEN
        RAISE EXCEPTION 'pgsched.workflow_add: workflow % does not exist', wf USING ERRCODE = 'no_data_found';
    END IF;
    IF on_failure IS NULL OR on_failure NOT IN ('cancel', 'run', 'failed') THEN
        RAISE EXCEPTION 'pgsched.workflow_add: on_failure must be cancel, run or failed, got %', coalesce(quote_literal(on_failure), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    depends_on := ARRAY(SELECT t.u FROM unnest(coalesce(depends_on, '{}')) WITH ORDINALITY AS t(u, n)
                         WHERE t.u IS NOT NULL GROUP BY t.u ORDER BY min(t.n));  -- first mention wins
    new_id := pgsched.enqueue(task, args, queue => queue, priority => priority, max_attempts => max_attempts,
                              timeout => timeout, run_at => now());
    -- Lock the dependencies (none can end unseen while the edges go in), mark them, read their states.
    LOOP
        BEGIN
            WITH marked AS (
                UPDATE pgsched.jobs j SET has_dependents = true WHERE j.id = ANY (depends_on) RETURNING j.id, j.state
            )
            SELECT count(*), count(*) FILTER (WHERE m.state NOT IN ('succeeded', 'dead', 'cancelled')),
                   min(m.id) FILTER (WHERE m.state IN ('dead', 'cancelled'))
              INTO found_deps, open_deps, blocker FROM marked m;
            EXIT;
        EXCEPTION WHEN serialization_failure THEN
            -- A dependency was claimed, finished or retried since this statement's snapshot: mark it where it is now.
            IF NOT pgsched.moved_again(tries) THEN
                RAISE;
            END IF;
            tries := tries + 1;
        END;
    END LOOP;
    IF found_deps <> cardinality(depends_on) THEN
        RAISE EXCEPTION 'pgsched.workflow_add: dependency % does not exist',
            (SELECT min(u) FROM unnest(depends_on) AS u WHERE NOT EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.id = u))
            USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO pgsched.job_dependencies (job_id, depends_on, position, on_failure, results_arg)
    SELECT new_id, d.id, d.n, on_failure, results_arg FROM unnest(depends_on) WITH ORDINALITY AS d(id, n);
    IF cardinality(depends_on) = 0 THEN
        UPDATE pgsched.jobs j SET workflow_id = wf WHERE j.id = new_id;
    ELSIF blocker IS NOT NULL AND on_failure = 'cancel' THEN  -- a dependency already failed
        SELECT d.state::text INTO blocker_state FROM pgsched.jobs d WHERE d.id = blocker;
        UPDATE pgsched.jobs j
           SET workflow_id = wf, state = 'cancelled', finished_at = now(), deps_left = open_deps,
               errors = jsonb_build_array(jsonb_build_object(
                   'at', now(), 'attempt', 0, 'error', format('dependency %s ended %s', blocker, blocker_state),
                   'kind', 'dependency_failed', 'dependency_id', blocker, 'traceback', NULL))
         WHERE j.id = new_id;
    ELSE
        UPDATE pgsched.jobs j SET workflow_id = wf, state = 'waiting', deps_left = open_deps WHERE j.id = new_id;
        IF open_deps = 0 THEN
            PERFORM pgsched.job_release(ARRAY[new_id]);  -- every dependency had ended already
        END IF;
    END IF;
    RETURN new_id;
END $$;

CREATE OR REPLACE FUNCTION pgsched.workflow_cancel(workflow_id bigint) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
#variable_conflict use_variable
DECLARE
    n integer;
    s record;
    tries integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgsched.workflows w WHERE w.id = workflow_id) THEN
        RAISE EXCEPTION 'pgsched.workflow_cancel: workflow % does not exist', workflow_id USING ERRCODE = 'no_data_found';
    END IF;
    -- One statement for every step not started: their own triggers then find their dependents
    -- already cancelled, so nothing cascades twice.
    LOOP
        BEGIN
            WITH stopped AS (
                UPDATE pgsched.jobs j
                   SET state = 'cancelled', finished_at = now(),
                       errors = j.errors || jsonb_build_array(jsonb_build_object(
                           'at', now(), 'attempt', j.attempt, 'error', 'workflow cancelled', 'kind', 'workflow_cancelled',
                           'traceback', NULL))
                 WHERE j.workflow_id = workflow_id AND j.state IN ('waiting', 'queued')
                RETURNING j.id
            ), told AS (
                SELECT count(pg_notify('pgsched_done', stopped.id::text)) AS sent FROM stopped
                 WHERE EXISTS (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = stopped.id)
            )
            SELECT count(*) INTO n FROM stopped, told;
            EXIT;
        EXCEPTION WHEN serialization_failure THEN
            -- A step was claimed since this statement's snapshot: it is running now, and signalled below.
            IF NOT pgsched.moved_again(tries) THEN
                RAISE;
            END IF;
            tries := tries + 1;
        END;
    END LOOP;
    FOR s IN SELECT j.id FROM pgsched.jobs j WHERE j.workflow_id = workflow_id AND j.state = 'running' ORDER BY j.id LOOP
        PERFORM pgsched.cancel(s.id);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
