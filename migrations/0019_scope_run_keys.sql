-- 0019: run keys name the scope they are unique over, and uniqueness moves out of pgsched.jobs into
-- pgsched.run_keys (one row per key: the job holding it, the scope, until when). A unique index on
-- jobs.run_key cannot stay: it blocked a key for the whole retention of its finished job, and a table
-- partitioned by state cannot have one on run_key alone.
--   retention  held while the holding job's row exists (the behaviour so far, and the default);
--   active     held while the holding job is waiting, queued or running;
--   period     held for a given interval from the first enqueue.
-- A stale holder (an active one that ended or is gone, a period past its end, a retention one whose row
-- is gone) is taken over at conflict time, under the run_keys row lock; finishing a job costs nothing.
-- Every change of a job from a finished state back to a live one (a redrive) takes the same row lock,
-- so a takeover's "is the holder live?" read, made after the lock, cannot be overtaken.

ALTER TABLE pgsched.jobs
    ADD COLUMN run_key_scope text,
    ADD COLUMN run_key_period interval,
    ADD CONSTRAINT jobs_run_key_scope_valid
        CHECK (run_key_scope IS NULL OR (run_key IS NOT NULL AND run_key_scope IN ('active', 'period', 'retention'))),
    ADD CONSTRAINT jobs_run_key_period_valid
        CHECK (CASE WHEN run_key_scope = 'period' THEN coalesce(run_key_period > interval '0', false)
                   ELSE run_key_period IS NULL END);

COMMENT ON COLUMN pgsched.jobs.run_key IS 'Optional dedupe key, unique over its run_key_scope (pgsched.run_keys holds it): enqueue with a held key returns the holder (or replaces a waiting one).';
COMMENT ON COLUMN pgsched.jobs.run_key_scope IS 'What the run key is unique over: retention (while this row exists; NULL means retention), active (while waiting, queued or running) or period (for run_key_period from the enqueue).';
COMMENT ON COLUMN pgsched.jobs.run_key_period IS 'For run_key_scope period: how long the key is held from the enqueue.';

CREATE TABLE pgsched.run_keys (
    run_key    text PRIMARY KEY,
    job_id     bigint NOT NULL,
    scope      text NOT NULL,
    held_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT run_keys_scope_valid CHECK (scope IN ('active', 'period', 'retention')),
    CONSTRAINT run_keys_held_until_valid CHECK ((scope = 'period') = (held_until IS NOT NULL))
);

COMMENT ON TABLE pgsched.run_keys IS 'Who holds each run key: one row per key, taken over at conflict time once its holder is stale, deleted by the leader''s pruner once stale.';
COMMENT ON COLUMN pgsched.run_keys.run_key IS 'The key (jobs.run_key).';
COMMENT ON COLUMN pgsched.run_keys.job_id IS 'The job holding the key (no foreign key: a stale row may outlive its job until it is taken over or pruned).';
COMMENT ON COLUMN pgsched.run_keys.scope IS 'retention: held while the job''s row exists; active: while it is waiting, queued or running; period: until held_until.';
COMMENT ON COLUMN pgsched.run_keys.held_until IS 'For scope period: the end of the hold.';
COMMENT ON COLUMN pgsched.run_keys.created_at IS 'When the holder took the key.';

INSERT INTO pgsched.run_keys (run_key, job_id, scope, created_at)
SELECT j.run_key, j.id, 'retention', j.created_at FROM pgsched.jobs j WHERE j.run_key IS NOT NULL;

DROP INDEX pgsched.jobs_run_key_idx;
CREATE INDEX jobs_run_key_idx ON pgsched.jobs (run_key) WHERE run_key IS NOT NULL;
COMMENT ON INDEX pgsched.jobs_run_key_idx IS 'Jobs by run key (not unique: pgsched.run_keys holds uniqueness).';

CREATE FUNCTION pgsched.run_key_stale(p_scope text, p_held_until timestamptz, p_job_id bigint, p_at timestamptz)
    RETURNS boolean
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pgsched
    AS $$
    SELECT CASE p_scope
               WHEN 'period' THEN p_held_until <= p_at
               WHEN 'active' THEN NOT EXISTS (SELECT 1 FROM pgsched.jobs j
                                               WHERE j.id = p_job_id AND j.state IN ('waiting', 'queued', 'running'))
               ELSE NOT EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.id = p_job_id)
           END
$$;

COMMENT ON FUNCTION pgsched.run_key_stale(text, timestamptz, bigint, timestamptz) IS 'Whether a run_keys row no longer holds its key at "at". Volatile on purpose: called after the row is locked, it reads the jobs as committed then, not as the calling statement first saw them.';

CREATE FUNCTION pgsched.run_key_take(
    p_run_key text, p_job_id bigint, p_scope text DEFAULT 'retention', p_period interval DEFAULT NULL,
    p_on_conflict text DEFAULT 'existing', p_args jsonb DEFAULT NULL, p_run_at timestamptz DEFAULT NULL,
    p_priority integer DEFAULT NULL, p_now timestamptz DEFAULT NULL
) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pgsched
    AS $$
DECLARE
    v_at timestamptz := coalesce(p_now, now());
    v_scope text := coalesce(p_scope, CASE WHEN p_period IS NULL THEN 'retention' ELSE 'period' END);
    v_until timestamptz;
    holder bigint;
    holder_scope text;
    holder_until timestamptz;
    holder_state pgsched.job_state;
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
                UPDATE pgsched.jobs j
                   SET args = coalesce(p_args, j.args), run_at = coalesce(p_run_at, v_at),
                       priority = coalesce(p_priority::smallint, j.priority)
                 WHERE j.id = holder AND j.state IN ('waiting', 'queued');
                IF FOUND THEN
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

COMMENT ON FUNCTION pgsched.run_key_take(text, bigint, text, interval, text, jsonb, timestamptz, integer, timestamptz) IS 'Give run_key to job_id (about to be inserted, or a job coming back to life) unless another job holds it over its scope: returns NULL when job_id holds it now, else the holder''s id. A stale holder is taken over. on_conflict replace: a holder that has not started takes args, run_at and priority (its id is returned); a running holder gives the key to job_id.';

CREATE FUNCTION pgsched.run_keys_take(
    p_run_keys text[], p_job_ids bigint[], p_scopes text[], p_periods interval[], p_on_conflicts text[],
    p_args jsonb[], p_run_ats timestamptz[], p_priorities integer[], p_now timestamptz DEFAULT NULL
) RETURNS TABLE (run_key text, job_id bigint, holder bigint)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pgsched
    AS $$
DECLARE
    t record;
BEGIN
    -- Keys in order, so two batches sharing keys wait on each other instead of deadlocking; the first
    -- job of a key repeated in the batch is the one that takes it.
    FOR t IN SELECT DISTINCT ON (u.k) u.k, u.id, u.scope, u.period, u.policy, u.args, u.run_at, u.priority
               FROM unnest(p_run_keys, p_job_ids, p_scopes, p_periods, p_on_conflicts, p_args, p_run_ats, p_priorities)
                    WITH ORDINALITY AS u(k, id, scope, period, policy, args, run_at, priority, n)
              WHERE u.k IS NOT NULL
              ORDER BY u.k, u.n
    LOOP
        run_key := t.k;
        job_id := t.id;
        holder := pgsched.run_key_take(t.k, t.id, t.scope, t.period, coalesce(t.policy, 'existing'),
                                       t.args, t.run_at, t.priority, p_now);
        RETURN NEXT;
    END LOOP;
END $$;

COMMENT ON FUNCTION pgsched.run_keys_take(text[], bigint[], text[], interval[], text[], jsonb[], timestamptz[], integer[], timestamptz) IS 'pgsched.run_key_take for a batch (parallel arrays), in key order; one row per distinct key: the job that would take it and the holder (NULL when that job took it).';

CREATE FUNCTION pgsched.jobs_run_key_hold() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pgsched
    AS $$
DECLARE
    holder bigint;
BEGIN
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

COMMENT ON FUNCTION pgsched.jobs_run_key_hold() IS 'BEFORE INSERT (and a return from a finished state, or a new key) of a live job with a run key: the job takes the key (pgsched.run_key_take) or the statement fails with unique_violation naming the holder.';

CREATE TRIGGER jobs_run_key_hold BEFORE INSERT ON pgsched.jobs
    FOR EACH ROW WHEN (NEW.run_key IS NOT NULL) EXECUTE FUNCTION pgsched.jobs_run_key_hold();
COMMENT ON TRIGGER jobs_run_key_hold ON pgsched.jobs IS 'A live job inserted with a run key takes the key, or the insert fails (unique_violation) while another job holds it.';

CREATE TRIGGER jobs_run_key_rehold BEFORE UPDATE OF state, run_key ON pgsched.jobs
    FOR EACH ROW WHEN (NEW.run_key IS NOT NULL AND NEW.state IN ('waiting', 'queued', 'running')
                       AND (OLD.state IN ('succeeded', 'dead', 'cancelled') OR OLD.run_key IS DISTINCT FROM NEW.run_key))
    EXECUTE FUNCTION pgsched.jobs_run_key_hold();
COMMENT ON TRIGGER jobs_run_key_rehold ON pgsched.jobs IS 'A finished job coming back (retry, redrive) or a live job given a new key takes its key again, or fails while another job holds it.';

DROP FUNCTION pgsched.enqueue(text, jsonb, text, integer, timestamptz, text, integer, interval, text, integer, text[], jsonb, timestamptz);

CREATE FUNCTION pgsched.enqueue(
    task text, args jsonb DEFAULT '{}', queue text DEFAULT NULL, priority integer DEFAULT NULL,
    run_at timestamptz DEFAULT NULL, run_key text DEFAULT NULL, max_attempts integer DEFAULT NULL,
    timeout interval DEFAULT NULL, concurrency_key text DEFAULT NULL, concurrency_limit integer DEFAULT NULL,
    tags text[] DEFAULT '{}', meta jsonb DEFAULT '{}', expires_at timestamptz DEFAULT NULL,
    run_key_scope text DEFAULT NULL, run_key_period interval DEFAULT NULL, on_conflict text DEFAULT 'existing'
) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pgsched
    AS $_$
#variable_conflict use_column
DECLARE
    new_id bigint;
    holder bigint;
BEGIN
    IF task IS NULL OR task !~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$' THEN
        RAISE EXCEPTION 'pgsched.enqueue: invalid task name %', coalesce(quote_literal(task), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A task name is letters, digits, _ . : - and starts with a letter or _.';
    END IF;
    IF queue IS NOT NULL AND queue !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'pgsched.enqueue: invalid queue name %', quote_literal(queue)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A queue name matches ^[a-z0-9][a-z0-9_.-]{0,62}$; leave it out for the task''s queue.';
    END IF;
    IF args IS NULL OR jsonb_typeof(args) <> 'object' THEN
        RAISE EXCEPTION 'pgsched.enqueue: args must be a JSON object, got %', coalesce(jsonb_typeof(args), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF priority IS NOT NULL AND priority NOT BETWEEN -1000 AND 1000 THEN
        RAISE EXCEPTION 'pgsched.enqueue: priority must be between -1000 and 1000, got %', priority
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_attempts IS NOT NULL AND max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'pgsched.enqueue: max_attempts must be between 1 and 1000, got %', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF concurrency_key IS NOT NULL AND length(concurrency_key) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'pgsched.enqueue: concurrency_key must be 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF concurrency_limit IS NOT NULL AND (concurrency_key IS NULL OR concurrency_limit NOT BETWEEN 1 AND 10000) THEN
        RAISE EXCEPTION 'pgsched.enqueue: concurrency_limit needs a concurrency_key and must be between 1 and 10000, got %',
            concurrency_limit USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tags IS NULL OR cardinality(tags) > 32 OR array_position(tags, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'pgsched.enqueue: tags must be an array of up to 32 non-null texts'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF meta IS NULL OR jsonb_typeof(meta) <> 'object' THEN
        RAISE EXCEPTION 'pgsched.enqueue: meta must be a JSON object, got %', coalesce(jsonb_typeof(meta), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF run_key IS NULL AND (run_key_scope IS NOT NULL OR run_key_period IS NOT NULL OR on_conflict IS DISTINCT FROM 'existing') THEN
        RAISE EXCEPTION 'pgsched.enqueue: run_key_scope, run_key_period and on_conflict need a run_key'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    new_id := nextval(pg_get_serial_sequence('pgsched.jobs', 'id')::regclass);
    IF run_key IS NOT NULL THEN
        run_key_scope := coalesce(run_key_scope, CASE WHEN run_key_period IS NULL THEN 'retention' ELSE 'period' END);
        holder := pgsched.run_key_take(run_key, new_id, run_key_scope, run_key_period, on_conflict,
                                       args, run_at, priority, NULL);
        IF holder IS NOT NULL THEN
            RETURN holder;
        END IF;
    END IF;
    INSERT INTO pgsched.jobs AS j (id, task, args, queue, priority, run_at, run_key, max_attempts, timeout,
                                   concurrency_key, concurrency_limit, tags, meta, expires_at, run_key_scope, run_key_period)
    VALUES (new_id, enqueue.task, enqueue.args, enqueue.queue, enqueue.priority::smallint,
            coalesce(enqueue.run_at, now()), enqueue.run_key, enqueue.max_attempts, enqueue.timeout,
            enqueue.concurrency_key, enqueue.concurrency_limit, enqueue.tags, enqueue.meta, enqueue.expires_at,
            enqueue.run_key_scope, enqueue.run_key_period);
    RETURN new_id;
END $_$;

COMMENT ON FUNCTION pgsched.enqueue(text, jsonb, text, integer, timestamptz, text, integer, interval, text, integer, text[], jsonb, timestamptz, text, interval, text) IS 'Enqueue a job and return its id. With a run_key another job holds over its scope, return that job''s id and create nothing (on_conflict existing, the default); on_conflict replace gives a holder that has not started the new args and run_at (and priority) and returns it, and lets a new job take the key from a running holder. run_key_scope: retention (default: while the holder''s row exists), active (while it is waiting, queued or running) or period (run_key_period from the first enqueue). Queue, priority and max_attempts left NULL come from the task''s declaration (pgsched.task_defaults). A concurrency_key limits how many jobs of the key run at once (concurrency_limit, default 1); tags and meta label the job; a job not started by expires_at ends as expired.';
