-- Finished jobs leave the hot path (issue 20): pgsched.jobs becomes a table partitioned by state.
--   jobs_live  (waiting, queued, running): the hot path, with the claim indexes and today's fillfactor and autovacuum settings.
--   jobs_done  (succeeded, dead, cancelled): partitioned again by purge_at (finished_at + the retention of its queue and state)
--              into time partitions the leader creates ahead and drops whole once passed, plus jobs_done_default, the safety net.
-- pgsched.jobs stays the one name to INSERT into and SELECT from; the id sequence goes on where it was.
-- An UPDATE of state that crosses partitions moves the row (DELETE + INSERT): AFTER UPDATE row triggers do not fire
-- then, so the workflow trigger also runs from the AFTER DELETE trigger, which tells a move from a real delete.

SET LOCAL pgsched.notify = 'off';

-- Retention per queue and state: what purge_at is computed from.
CREATE TABLE pgsched.retention (
    queue text NOT NULL,
    state pgsched.job_state NOT NULL,
    keep interval NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, state),
    CONSTRAINT retention_queue_valid CHECK (queue = '*' OR (length(queue) <= 63 AND queue ~ '^[a-z0-9][a-z0-9_.-]*$')),
    CONSTRAINT retention_state_final CHECK (state IN ('succeeded', 'dead', 'cancelled')),
    CONSTRAINT retention_keep_range CHECK (keep >= interval '0' AND keep <= interval '3660 days')
);
COMMENT ON TABLE pgsched.retention IS 'How long finished jobs are kept, per queue and final state; queue * holds the defaults (written by the leader from PGSCHED_RETENTION_*_SECONDS). A job''s purge_at is finished_at + this, fixed when it finishes.';
COMMENT ON COLUMN pgsched.retention.queue IS 'Queue name, or * for every queue without a row of its own.';
COMMENT ON COLUMN pgsched.retention.state IS 'Final state: succeeded, dead or cancelled.';
COMMENT ON COLUMN pgsched.retention.keep IS 'How long a job finished in this state is kept.';
COMMENT ON COLUMN pgsched.retention.updated_at IS 'Last change.';
INSERT INTO pgsched.retention (queue, state, keep)
VALUES ('*', 'succeeded', interval '1 day'), ('*', 'cancelled', interval '7 days'), ('*', 'dead', interval '30 days');

CREATE FUNCTION pgsched.purge_at(p_queue text, p_state pgsched.job_state, p_finished_at timestamptz) RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
    SELECT p_finished_at + coalesce(
        (SELECT r.keep FROM pgsched.retention r WHERE r.queue = p_queue AND r.state = p_state),
        (SELECT r.keep FROM pgsched.retention r WHERE r.queue = '*' AND r.state = p_state),
        interval '1 day')
     WHERE p_state IN ('succeeded', 'dead', 'cancelled')
$$;
COMMENT ON FUNCTION pgsched.purge_at(text, pgsched.job_state, timestamptz) IS 'When a job of this queue that finished in this state at this instant may be dropped: finished_at + its retention (pgsched.retention); NULL for a state that is not final.';

-- The views read the old table: keep their text, comments and column comments, drop them, recreate them below.
CREATE TEMP TABLE storage_views ON COMMIT DROP AS
SELECT c.oid, c.relname, pg_get_viewdef(c.oid) AS def, obj_description(c.oid, 'pg_class') AS comment,
       (SELECT coalesce(jsonb_object_agg(a.attname, col_description(c.oid, a.attnum)) FILTER (WHERE col_description(c.oid, a.attnum) IS NOT NULL), '{}')
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'pgsched' AND c.relkind = 'v';

DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT relname FROM storage_views LOOP
        EXECUTE format('DROP VIEW IF EXISTS pgsched.%I CASCADE', v.relname);
    END LOOP;
END $$;

-- Its triggers too (recreated on the new table below, but for the two reworked for row movement).
CREATE TEMP TABLE storage_triggers ON COMMIT DROP AS
SELECT t.tgname AS name, pg_get_triggerdef(t.oid) AS def, obj_description(t.oid, 'pg_trigger') AS comment
  FROM pg_trigger t
 WHERE t.tgrelid = 'pgsched.jobs'::regclass AND NOT t.tgisinternal
   AND t.tgname NOT IN ('jobs_advance_dependents', 'jobs_forget_dependencies');

ALTER TABLE pgsched.jobs RENAME TO jobs_old;
ALTER SEQUENCE pgsched.jobs_id_seq RENAME TO jobs_old_id_seq;
ALTER TABLE pgsched.jobs_old ADD COLUMN purge_at timestamptz;
COMMENT ON COLUMN pgsched.jobs_old.purge_at IS 'When this finished job may be dropped: finished_at + the retention of its queue and state (pgsched.retention), set when it finishes (by the finishing statement, else by the jobs_purge_at trigger); NULL while it is live. Finished jobs live in the time partition of jobs_done that holds this instant.';

CREATE TABLE pgsched.jobs (LIKE pgsched.jobs_old INCLUDING ALL EXCLUDING INDEXES EXCLUDING STATISTICS)
    PARTITION BY LIST (state);
COMMENT ON TABLE pgsched.jobs IS 'Every job, live or finished: partitioned by state into jobs_live (waiting, queued, running: the hot path) and jobs_done (succeeded, dead, cancelled), itself partitioned by purge_at into time partitions that retention drops whole. Insert into and read from this name. id comes from its sequence; it has no unique index across partitions.';
SELECT setval(pg_get_serial_sequence('pgsched.jobs', 'id'), s.last_value, s.is_called) FROM pgsched.jobs_old_id_seq s;

CREATE TABLE pgsched.jobs_live PARTITION OF pgsched.jobs (PRIMARY KEY (id))
    FOR VALUES IN ('waiting', 'queued', 'running')
    WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.05,
          autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
COMMENT ON TABLE pgsched.jobs_live IS 'Partition of pgsched.jobs: waiting, queued and running jobs (the hot path: claims and finishes touch only it).';

CREATE TABLE pgsched.jobs_done PARTITION OF pgsched.jobs
    FOR VALUES IN ('succeeded', 'dead', 'cancelled') PARTITION BY RANGE (purge_at);
COMMENT ON TABLE pgsched.jobs_done IS 'Partition of pgsched.jobs: finished jobs, partitioned by purge_at into time partitions (jobs_done_YYYYMMDD_HHMMSS) the leader creates ahead of need and detaches and drops once passed.';

CREATE TABLE pgsched.jobs_done_default PARTITION OF pgsched.jobs_done DEFAULT;
COMMENT ON TABLE pgsched.jobs_done_default IS 'Finished jobs whose time partition does not exist (yet), or without purge_at: the leader moves them into a partition it creates, and deletes them in small batches once past their retention.';

-- Move the rows: finished ones get their purge_at from today's retention.
DO $$
DECLARE
    cols text;
    vals text;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
           string_agg(CASE WHEN a.attname = 'purge_at' THEN 'pgsched.purge_at(o.queue, o.state, coalesce(o.finished_at, o.created_at))'
                           ELSE 'o.' || quote_ident(a.attname) END, ', ' ORDER BY a.attnum)
      INTO cols, vals
      FROM pg_attribute a
     WHERE a.attrelid = 'pgsched.jobs_old'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format('INSERT INTO pgsched.jobs (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM pgsched.jobs_old o', cols, vals);
END $$;

DROP TABLE pgsched.jobs_old CASCADE;

-- Hot-path indexes: only where the hot path reads (jobs_live).
CREATE INDEX jobs_claim_idx ON pgsched.jobs_live USING btree (queue, priority DESC, run_at, id) WHERE ((state = 'queued'::pgsched.job_state) AND (concurrency_key IS NULL));
COMMENT ON INDEX pgsched.jobs_claim_idx IS 'The claim: due queued jobs without a concurrency key, per queue in priority order.';
CREATE INDEX jobs_keyed_claim_idx ON pgsched.jobs_live USING btree (queue, concurrency_key, priority DESC, run_at, id) WHERE ((state = 'queued'::pgsched.job_state) AND (concurrency_key IS NOT NULL));
COMMENT ON INDEX pgsched.jobs_keyed_claim_idx IS 'The claim of jobs with a concurrency key, per queue and key in priority order.';
CREATE INDEX jobs_running_idx ON pgsched.jobs_live USING btree (worker_id) WHERE (state = 'running'::pgsched.job_state);
COMMENT ON INDEX pgsched.jobs_running_idx IS 'Running jobs per worker: the reaper and the reconcile read it.';
CREATE INDEX jobs_waiting_idx ON pgsched.jobs_live USING btree (run_at, id) WHERE (state = 'queued'::pgsched.job_state);
COMMENT ON INDEX pgsched.jobs_waiting_idx IS 'Queued jobs in run_at order: the dashboard''s available, scheduled and retrying pages read a page of it.';
CREATE INDEX jobs_expiring_idx ON pgsched.jobs_live USING btree (expires_at) WHERE ((expires_at IS NOT NULL) AND (started_at IS NULL) AND (finished_at IS NULL));
COMMENT ON INDEX pgsched.jobs_expiring_idx IS 'Jobs with a deadline to start that have not started: the leader expires them.';

-- Indexes of every partition (finished jobs included).
CREATE INDEX jobs_done_id_idx ON pgsched.jobs_done USING btree (id);
COMMENT ON INDEX pgsched.jobs_done_id_idx IS 'Finished jobs by id, in every time partition: GET /jobs/{id}, and lists by state in id order (a merge of these).';
CREATE INDEX jobs_finished_idx ON pgsched.jobs USING btree (state, finished_at) WHERE (finished_at IS NOT NULL);
CREATE INDEX jobs_meta_idx ON pgsched.jobs USING gin (meta jsonb_path_ops) WHERE (meta <> '{}'::jsonb);
CREATE INDEX jobs_run_key_idx ON pgsched.jobs USING btree (run_key) WHERE (run_key IS NOT NULL);
COMMENT ON INDEX pgsched.jobs_run_key_idx IS 'Jobs by run key (not unique: pgsched.run_keys holds uniqueness).';
CREATE INDEX jobs_schedule_idx ON pgsched.jobs USING btree (schedule_id, run_at) WHERE (schedule_id IS NOT NULL);
CREATE INDEX jobs_tags_idx ON pgsched.jobs USING gin (tags) WHERE (tags <> '{}'::text[]);
CREATE INDEX jobs_workflow_idx ON pgsched.jobs USING btree (workflow_id, id) WHERE (workflow_id IS NOT NULL);

-- Triggers (row triggers are cloned onto every partition): those of the old table as they were.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM storage_triggers LOOP
        EXECUTE t.def;
        IF t.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON TRIGGER %I ON pgsched.jobs IS %L', t.name, t.comment);
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION pgsched.jobs_purge_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    NEW.purge_at := pgsched.purge_at(NEW.queue, NEW.state, coalesce(NEW.finished_at, now()));
    RETURN NEW;
END $$;
COMMENT ON FUNCTION pgsched.jobs_purge_at() IS 'BEFORE UPDATE on jobs: a job that ends without purge_at gets it (finished_at + its retention), one back in play loses it; the hot finish sets it itself, so this fires only for the other paths (admin, cancel, expire, reaper, hand-made SQL).';
-- BEFORE UPDATE fires on the source partition, before the row is routed: purge_at chooses its time partition.
CREATE TRIGGER jobs_purge_at BEFORE UPDATE ON pgsched.jobs FOR EACH ROW
    WHEN ((new.state IN ('succeeded', 'dead', 'cancelled') AND new.purge_at IS NULL)
          OR (new.state IN ('waiting', 'queued', 'running') AND new.purge_at IS NOT NULL))
    EXECUTE FUNCTION pgsched.jobs_purge_at();
COMMENT ON TRIGGER jobs_purge_at ON pgsched.jobs IS 'Sets purge_at of a job that ends by any statement that did not set it, and clears it when a job goes back to a live state.';

CREATE OR REPLACE FUNCTION pgsched.dependents_advance(p_id bigint, p_old pgsched.job_state, p_new pgsched.job_state) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    todo bigint[] := ARRAY[p_id];
    cause text := p_new::text;
    failed boolean := p_new IN ('dead', 'cancelled');
    ready bigint[];
    next_ids bigint[];
    revived bigint[];
    queues text[];
BEGIN
    -- Our own updates below fire this trigger again: the loops here handle them instead.
    IF current_setting('pgsched.advancing', true) = 'on' THEN
        RETURN;
    END IF;
    IF p_new = 'succeeded' AND p_old NOT IN ('succeeded', 'dead', 'cancelled') THEN
        -- The hot path (a step succeeded): one statement counts down its waiting dependents, each
        -- under its row lock, and releases those at zero; nothing it does fires this trigger again.
        WITH hit AS (
            UPDATE pgsched.jobs j
               SET deps_left = j.deps_left - 1,
                   state = CASE WHEN j.deps_left = 1 AND e.results_arg IS NULL AND e.on_failure <> 'failed'
                                THEN 'queued' ELSE 'waiting' END::pgsched.job_state,
                   run_at = CASE WHEN j.deps_left = 1 AND e.results_arg IS NULL AND e.on_failure <> 'failed'
                                 THEN greatest(j.run_at, now()) ELSE j.run_at END
              FROM pgsched.job_dependencies e
             WHERE e.depends_on = p_id AND j.id = e.job_id AND j.state = 'waiting'
            RETURNING j.id, j.state, j.deps_left, j.queue
        )
        SELECT array_agg(h.id ORDER BY h.id) FILTER (WHERE h.state = 'waiting' AND h.deps_left = 0),
               array_agg(DISTINCT h.queue) FILTER (WHERE h.state = 'queued')
          INTO ready, queues
          FROM hit h;
        IF queues IS NOT NULL AND current_setting('pgsched.notify', true) IS DISTINCT FROM 'off' THEN
            PERFORM pg_notify('pgsched_jobs', q.name) FROM unnest(queues) AS q(name)
              WHERE EXISTS (SELECT 1 FROM pgsched.waiting_workers w WHERE w.queue = q.name);
        END IF;
        IF ready IS NULL THEN
            RETURN;
        END IF;
        -- Some want results or have "failed" edges: settled apart, which may cancel (and cascade).
        PERFORM set_config('pgsched.advancing', 'on', true);
        todo := pgsched.job_release(ready);
        failed := true;
        cause := 'cancelled';
    ELSE
        PERFORM set_config('pgsched.advancing', 'on', true);
    END IF;
    IF p_new IN ('succeeded', 'dead', 'cancelled') AND p_old IN ('succeeded', 'dead', 'cancelled') THEN
        NULL;  -- from one end to another (a hand-made UPDATE): its dependents counted it already
    ELSIF p_new IN ('succeeded', 'dead', 'cancelled') THEN
        -- One level of the graph per pass: the jobs ended in todo count down their waiting dependents.
        WHILE cardinality(todo) > 0 LOOP
            WITH edge AS (
                SELECT e.job_id, count(*)::integer AS n, min(e.depends_on) FILTER (WHERE e.on_failure = 'cancel') AS blocker,
                       bool_or(e.on_failure = 'failed') OR max(e.results_arg) IS NOT NULL AS settle_apart
                  FROM pgsched.job_dependencies e
                 WHERE e.depends_on = ANY (todo)
                 GROUP BY e.job_id
            ), hit AS (
                UPDATE pgsched.jobs j
                   SET deps_left = j.deps_left - e.n,
                       state = CASE WHEN failed AND e.blocker IS NOT NULL THEN 'cancelled'
                                    WHEN j.deps_left = e.n AND NOT e.settle_apart THEN 'queued'
                                    ELSE 'waiting' END::pgsched.job_state,
                       finished_at = CASE WHEN failed AND e.blocker IS NOT NULL THEN now() END,
                       run_at = CASE WHEN NOT (failed AND e.blocker IS NOT NULL) AND j.deps_left = e.n AND NOT e.settle_apart
                                     THEN greatest(j.run_at, now()) ELSE j.run_at END,
                       errors = CASE WHEN failed AND e.blocker IS NOT NULL
                                     THEN j.errors || jsonb_build_array(jsonb_build_object(
                                          'at', now(), 'attempt', j.attempt,
                                          'error', format('dependency %s ended %s', e.blocker, cause),
                                          'kind', 'dependency_failed', 'dependency_id', e.blocker, 'traceback', NULL))
                                     ELSE j.errors END
                  FROM edge e
                 WHERE j.id = e.job_id AND j.state = 'waiting'
                RETURNING j.id, j.state, j.deps_left, j.queue, j.has_dependents
            ), woken AS (
                SELECT count(pg_notify('pgsched_jobs', q.queue)) AS sent
                  FROM (SELECT DISTINCT h.queue FROM hit h WHERE h.state = 'queued') q
                 WHERE current_setting('pgsched.notify', true) IS DISTINCT FROM 'off'
                   AND EXISTS (SELECT 1 FROM pgsched.waiting_workers w WHERE w.queue = q.queue)
            ), told AS (
                SELECT count(pg_notify('pgsched_done', h.id::text)) AS sent
                  FROM hit h
                 WHERE h.state = 'cancelled' AND EXISTS (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = h.id)
            )
            SELECT array_agg(h.id ORDER BY h.id) FILTER (WHERE h.state = 'waiting' AND h.deps_left = 0),
                   coalesce(array_agg(h.id) FILTER (WHERE h.state = 'cancelled' AND h.has_dependents), '{}')
              INTO ready, next_ids
              FROM woken, told LEFT JOIN hit h ON true;
            IF ready IS NOT NULL THEN
                next_ids := next_ids || pgsched.job_release(ready);
            END IF;
            todo := next_ids;
            failed := true;  -- what cascades from here was cancelled
            cause := 'cancelled';
        END LOOP;
    ELSE
        -- NEW is back in play (a retry): its waiting dependents wait for it again, and the dependents
        -- it had cancelled wait again (recounted, in a statement of their own), level by level.
        WHILE cardinality(todo) > 0 LOOP
            UPDATE pgsched.jobs j SET deps_left = j.deps_left + e.n
              FROM (SELECT e.job_id, count(*)::integer AS n FROM pgsched.job_dependencies e
                     WHERE e.depends_on = ANY (todo) GROUP BY e.job_id) e
             WHERE j.id = e.job_id AND j.state = 'waiting';
            WITH back AS (
                UPDATE pgsched.jobs j SET state = 'waiting', finished_at = NULL
                  FROM pgsched.job_dependencies e
                 WHERE e.depends_on = ANY (todo) AND j.id = e.job_id AND j.state = 'cancelled'
                   AND j.errors -> -1 ->> 'kind' = 'dependency_failed'
                   AND (j.errors -> -1 ->> 'dependency_id')::bigint = e.depends_on
                RETURNING j.id, j.has_dependents
            )
            SELECT coalesce(array_agg(b.id), '{}'), coalesce(array_agg(b.id) FILTER (WHERE b.has_dependents), '{}')
              INTO revived, next_ids FROM back b;
            UPDATE pgsched.jobs j
               SET deps_left = (SELECT count(*) FROM pgsched.job_dependencies e LEFT JOIN pgsched.jobs d ON d.id = e.depends_on
                                 WHERE e.job_id = j.id AND d.state NOT IN ('succeeded', 'dead', 'cancelled'))
             WHERE j.id = ANY (revived);
            todo := next_ids;
        END LOOP;
    END IF;
    PERFORM set_config('pgsched.advancing', 'off', true);
    RETURN;
END $$;

COMMENT ON FUNCTION pgsched.dependents_advance(bigint, pgsched.job_state, pgsched.job_state) IS 'A job with dependents went from state p_old to p_new: count down its waiting dependents in one UPDATE under their row locks (release at zero, cancel on a failed "cancel" edge, cascading level by level), or, when it left dead/cancelled/succeeded (a retry), its dependents wait for it again and those it cancelled are revived; in the transaction of that change. Called by the jobs_advance_dependents trigger (a change within a partition) and by jobs_forget_dependencies (a change that moved the row across partitions).';

CREATE OR REPLACE FUNCTION pgsched.jobs_advance_dependents() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    PERFORM pgsched.dependents_advance(NEW.id, OLD.state, NEW.state);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_advance_dependents() IS 'Trigger: a job with dependents changed state within its partition (pgsched.dependents_advance); a change that moves the row across partitions fires jobs_forget_dependencies instead.';

CREATE TRIGGER jobs_advance_dependents AFTER UPDATE OF state ON pgsched.jobs FOR EACH ROW WHEN ((old.has_dependents AND (new.state IS DISTINCT FROM old.state) AND ((new.state = ANY (ARRAY['succeeded'::pgsched.job_state, 'dead'::pgsched.job_state, 'cancelled'::pgsched.job_state])) OR (old.state = ANY (ARRAY['succeeded'::pgsched.job_state, 'dead'::pgsched.job_state, 'cancelled'::pgsched.job_state]))))) EXECUTE FUNCTION pgsched.jobs_advance_dependents();

CREATE OR REPLACE FUNCTION pgsched.jobs_forget_dependencies() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    now_state pgsched.job_state;
BEGIN
    -- The leader moving rows between partitions of finished jobs (history_partition_create): not a change.
    IF current_setting('pgsched.moving', true) = 'on' THEN
        RETURN NULL;
    END IF;
    -- After the statement, a row moved by an UPDATE is in its new partition under the same id (ids come from one sequence).
    SELECT j.state INTO now_state FROM pgsched.jobs j WHERE j.id = OLD.id;
    IF NOT FOUND THEN
        DELETE FROM pgsched.job_dependencies e WHERE e.job_id = OLD.id;
    ELSIF OLD.has_dependents AND now_state IS DISTINCT FROM OLD.state
          AND (now_state IN ('succeeded', 'dead', 'cancelled') OR OLD.state IN ('succeeded', 'dead', 'cancelled')) THEN
        PERFORM pgsched.dependents_advance(OLD.id, OLD.state, now_state);
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_forget_dependencies() IS 'Trigger AFTER DELETE on jobs: a deleted workflow step takes its dependency edges along; a row an UPDATE moved across partitions (a job that ended, or was retried) is no delete: its dependents advance (pgsched.dependents_advance) as jobs_advance_dependents does for a change within a partition.';

CREATE TRIGGER jobs_forget_dependencies AFTER DELETE ON pgsched.jobs FOR EACH ROW
    WHEN ((old.workflow_id IS NOT NULL) OR old.has_dependents) EXECUTE FUNCTION pgsched.jobs_forget_dependencies();

-- Time partitions of finished jobs.
CREATE VIEW pgsched.history_partitions AS
SELECT c.relname AS name,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''([^'']*)''\)')::timestamptz AS purge_from,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']*)''\)')::timestamptz AS purge_to,
       c.reltuples::bigint AS rows_estimate,
       pg_total_relation_size(c.oid) AS bytes
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'pgsched.jobs_done'::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT';
COMMENT ON VIEW pgsched.history_partitions IS 'The time partitions of finished jobs (jobs_done): each holds the jobs whose purge_at falls in [purge_from, purge_to) and is dropped whole once purge_to has passed.';
COMMENT ON COLUMN pgsched.history_partitions.name IS 'Partition (table) name.';
COMMENT ON COLUMN pgsched.history_partitions.purge_from IS 'Lower bound of purge_at (inclusive).';
COMMENT ON COLUMN pgsched.history_partitions.purge_to IS 'Upper bound of purge_at (exclusive): the partition is dropped once this has passed.';
COMMENT ON COLUMN pgsched.history_partitions.rows_estimate IS 'Rows, as estimated by the last ANALYZE or VACUUM (-1: never).';
COMMENT ON COLUMN pgsched.history_partitions.bytes IS 'Size on disk with its indexes.';

CREATE FUNCTION pgsched.history_partition_create(p_from timestamptz, p_to timestamptz) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    name text := 'jobs_done_' || to_char(p_from AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MISS');
BEGIN
    IF p_to <= p_from OR EXISTS (SELECT 1 FROM pgsched.history_partitions h WHERE h.purge_from < p_to AND h.purge_to > p_from)
       OR to_regclass('pgsched.' || quote_ident(name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Created apart and attached: ATTACH takes a weaker lock on jobs_done than CREATE ... PARTITION OF, so finishing
    -- jobs go on; rows that landed in the default partition for this range come along first (ATTACH refuses otherwise).
    EXECUTE format('CREATE TABLE pgsched.%I (LIKE pgsched.jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    PERFORM set_config('pgsched.moving', 'on', true);
    EXECUTE format('WITH moved AS (DELETE FROM pgsched.jobs_done_default d WHERE d.purge_at >= $1 AND d.purge_at < $2 RETURNING d.*) '
                   'INSERT INTO pgsched.%I SELECT * FROM moved', name) USING p_from, p_to;
    PERFORM set_config('pgsched.moving', 'off', true);
    EXECUTE format('ALTER TABLE pgsched.jobs_done ATTACH PARTITION pgsched.%I FOR VALUES FROM (%L) TO (%L)', name, p_from, p_to);
    EXECUTE format('COMMENT ON TABLE pgsched.%I IS %L', name,
                   format('Finished jobs whose purge_at is in [%s, %s): dropped whole once past.', p_from, p_to));
    RETURN true;
END $$;
COMMENT ON FUNCTION pgsched.history_partition_create(timestamptz, timestamptz) IS 'Create the time partition of jobs_done for purge_at in [p_from, p_to), moving into it the rows of the default partition in that range; false when it (or an overlapping one) exists.';

CREATE FUNCTION pgsched.history_partition_drop(p_name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgsched.history_partitions h WHERE h.name = p_name) THEN
        RAISE EXCEPTION 'pgsched.history_partition_drop: % is not a time partition of pgsched.jobs_done', quote_literal(p_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ALTER TABLE pgsched.jobs_done DETACH PARTITION pgsched.%I', p_name);
    EXECUTE format('DROP TABLE pgsched.%I', p_name);
END $$;
COMMENT ON FUNCTION pgsched.history_partition_drop(text) IS 'Detach and drop one time partition of finished jobs (all its jobs go at once); the caller sets a short lock_timeout so it never holds up the hot path.';

CREATE FUNCTION pgsched.history_maintain(p_width interval, p_at timestamptz, p_max_ahead integer DEFAULT 400,
                                         p_lock_timeout text DEFAULT '100ms')
    RETURNS TABLE(created integer, dropped integer, busy integer)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    w double precision := extract(epoch FROM p_width);
    lo timestamptz;
    upto timestamptz;
    p record;
BEGIN
    created := 0; dropped := 0; busy := 0;
    IF w IS NULL OR w < 1 THEN
        RAISE EXCEPTION 'pgsched.history_maintain: the partition width must be at least 1 second, got %', p_width
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Each DDL waits at most p_lock_timeout for its lock, so finishing jobs never queue behind it for long; what could
    -- not get its lock is counted busy and tried again next round.
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    FOR p IN SELECT h.name FROM pgsched.history_partitions h WHERE h.purge_to <= p_at ORDER BY h.purge_to LOOP
        BEGIN
            PERFORM pgsched.history_partition_drop(p.name);
            dropped := dropped + 1;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy + 1;
        END;
    END LOOP;
    -- Ahead: every purge_at a job finishing now can get (the longest retention), plus one width.
    lo := to_timestamp(floor(extract(epoch FROM p_at) / w) * w);
    upto := p_at + (SELECT coalesce(max(r.keep), interval '0') FROM pgsched.retention r) + p_width;
    WHILE lo < upto AND created + (SELECT count(*) FROM pgsched.history_partitions h WHERE h.purge_to > p_at) < p_max_ahead LOOP
        BEGIN
            IF pgsched.history_partition_create(lo, lo + p_width) THEN
                created := created + 1;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy + 1;
        END;
        lo := lo + p_width;
    END LOOP;
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION pgsched.history_maintain(interval, timestamptz, integer, text) IS 'Leader, each prune round: detach and drop the time partitions of finished jobs whose purge_at range has passed, and create those of width p_width ahead (up to the longest retention, at most p_max_ahead in the future); DDL that cannot get its lock within p_lock_timeout is skipped (busy) until next round.';

-- The views again, over the new table, with their comments (a view over another view waits for it).
DO $$
DECLARE
    v record;
    c record;
    left_n integer;
    last_n integer := -1;
BEGIN
    LOOP
        left_n := 0;
        FOR v IN SELECT * FROM storage_views s WHERE to_regclass('pgsched.' || quote_ident(s.relname)) IS NULL ORDER BY s.oid LOOP
            BEGIN
                EXECUTE format('CREATE VIEW pgsched.%I AS %s', v.relname, v.def);
                EXECUTE format('COMMENT ON VIEW pgsched.%I IS %L', v.relname, v.comment);
                FOR c IN SELECT * FROM jsonb_each_text(v.columns) LOOP
                    EXECUTE format('COMMENT ON COLUMN pgsched.%I.%I IS %L', v.relname, c.key, c.value);
                END LOOP;
            EXCEPTION WHEN undefined_table THEN
                left_n := left_n + 1;
            END;
        END LOOP;
        EXIT WHEN left_n = 0;
        IF left_n = last_n THEN
            RAISE EXCEPTION 'views could not be recreated: %', (SELECT string_agg(s.relname, ', ') FROM storage_views s
                                                                 WHERE to_regclass('pgsched.' || quote_ident(s.relname)) IS NULL);
        END IF;
        last_n := left_n;
    END LOOP;
END $$;
