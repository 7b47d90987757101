-- 0038: a passed time partition of finished jobs leaves pgsched.jobs in one short transaction and is dropped in the
-- next. pgsched.history_partition_drop detached and dropped it in one, and DETACH PARTITION (not CONCURRENTLY: a
-- default partition exists, and PostgreSQL refuses it then) holds ACCESS EXCLUSIVE locks on jobs_done and
-- jobs_done_default, which every finish needs, until the commit, which is when the DROP unlinks the files. Now
-- history_maintain_step detaches (the counters of the partition go in the same transaction, so the counts stay
-- exact) and records the table in pgsched.history_detached; a later step drops it, holding a lock on that table
-- only. A table detached but not dropped (a crash in between) is out of pgsched.jobs already, and the next step
-- drops it first. A detach whose locks are busy gives up for this step: every other passed partition needs the same
-- lock on jobs_done, and a create the same on jobs_done_default: trying each in turn kept finishes queued behind
-- one lock request after another, lock_timeout each.

CREATE TABLE pgsched.history_detached (
    name         text PRIMARY KEY,
    detached_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgsched.history_detached IS 'Time partitions of finished jobs detached from pgsched.jobs_done and not dropped yet (tables in schema pgsched): the leader''s next history_maintain_step drops them, a crash between the two notwithstanding. No job statement reads them.';
COMMENT ON COLUMN pgsched.history_detached.name IS 'Table name in schema pgsched.';
COMMENT ON COLUMN pgsched.history_detached.detached_at IS 'When it was detached.';

CREATE FUNCTION pgsched.history_partition_detach(p_name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    p oid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgsched.history_partitions h WHERE h.name = p_name) THEN
        RAISE EXCEPTION 'pgsched.history_partition_detach: % is not a time partition of pgsched.jobs_done', quote_literal(p_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    p := to_regclass('pgsched.' || quote_ident(p_name));
    EXECUTE format('ALTER TABLE pgsched.jobs_done DETACH PARTITION pgsched.%I', p_name);
    DELETE FROM pgsched.history_counts c WHERE c.part = p;
    DELETE FROM pgsched.history_count_marks m WHERE m.part = p;
    INSERT INTO pgsched.history_detached (name) VALUES (p_name);
END $$;
COMMENT ON FUNCTION pgsched.history_partition_detach(text) IS 'Take one time partition of finished jobs out of pgsched.jobs (all its jobs at once) with its counters, and record it in pgsched.history_detached for pgsched.history_detached_drop. Holds ACCESS EXCLUSIVE locks on jobs_done and jobs_done_default until its transaction ends: keep that transaction to this call, under a short lock_timeout.';

CREATE FUNCTION pgsched.history_detached_drop() RETURNS text
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    d record;
BEGIN
    -- The oldest first; one whose lock is busy (lock_not_available) is left to the caller.
    SELECT h.name INTO d FROM pgsched.history_detached h ORDER BY h.detached_at, h.name LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- Never a table that is (again) a partition: it would take its jobs out of pgsched.jobs.
    IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = to_regclass('pgsched.' || quote_ident(d.name))) THEN
        RAISE EXCEPTION 'pgsched.history_detached_drop: % is a partition', quote_literal(d.name)
            USING ERRCODE = 'object_in_use';
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS pgsched.%I', d.name);
    DELETE FROM pgsched.history_detached h WHERE h.name = d.name;
    RETURN d.name;
END $$;
COMMENT ON FUNCTION pgsched.history_detached_drop() IS 'Drop the oldest table of pgsched.history_detached (gone already: forgotten); returns its name, or NULL when none is left. Locks that table only.';

-- As before for SQL of your own and the history bench: both halves in the caller's transaction.
CREATE OR REPLACE FUNCTION pgsched.history_partition_drop(p_name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    PERFORM pgsched.history_partition_detach(p_name);
    EXECUTE format('DROP TABLE pgsched.%I', p_name);
    DELETE FROM pgsched.history_detached h WHERE h.name = p_name;
END $$;
COMMENT ON FUNCTION pgsched.history_partition_drop(text) IS 'Detach and drop one time partition of finished jobs (all its jobs go at once) in the caller''s transaction, which holds ACCESS EXCLUSIVE locks on jobs_done until it ends; the leader detaches and drops in two transactions instead (pgsched.history_maintain_step).';

DROP FUNCTION pgsched.history_maintain_step(interval, timestamptz, integer, text);
CREATE FUNCTION pgsched.history_maintain_step(p_width interval, p_at timestamptz, p_max_ahead integer DEFAULT 400,
                                              p_lock_timeout text DEFAULT '100ms')
    RETURNS TABLE(created integer, dropped integer, busy integer, removed integer)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    w double precision := extract(epoch FROM p_width);
    lo timestamptz;
    upto timestamptz;
    p record;
BEGIN
    created := 0; dropped := 0; busy := 0; removed := 0;
    IF w IS NULL OR w < 1 THEN
        RAISE EXCEPTION 'pgsched.history_maintain_step: the partition width must be at least 1 second, got %', p_width
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    -- A detached table first (the one the last step detached, or one a crash left).
    BEGIN
        IF pgsched.history_detached_drop() IS NOT NULL THEN
            removed := 1;
            RETURN NEXT;
            RETURN;
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        busy := busy + 1;
    END;
    -- Then the oldest passed partition: detached now, dropped by the next step.
    FOR p IN SELECT h.name FROM pgsched.history_partitions h WHERE h.purge_to <= p_at ORDER BY h.purge_to LIMIT 1 LOOP
        BEGIN
            PERFORM pgsched.history_partition_detach(p.name);
            dropped := 1;
            RETURN NEXT;
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy + 1;
            RETURN NEXT;  -- a create needs the same lock on jobs_done_default
            RETURN;
        END;
    END LOOP;
    -- Else the nearest missing partition ahead (as history_maintain: up to the longest retention plus one width).
    lo := to_timestamp(floor(extract(epoch FROM p_at) / w) * w);
    upto := p_at + (SELECT coalesce(max(r.keep), interval '0') FROM pgsched.retention r) + p_width;
    WHILE lo < upto AND (SELECT count(*) FROM pgsched.history_partitions h WHERE h.purge_to > p_at) < p_max_ahead LOOP
        BEGIN
            IF pgsched.history_partition_create(lo, lo + p_width) THEN
                created := 1;
                EXIT;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy + 1;
            EXIT;  -- the default partition is busy: every other create would wait as long
        END;
        lo := lo + p_width;
    END LOOP;
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION pgsched.history_maintain_step(interval, timestamptz, integer, text) IS 'Leader: one step of pgsched.history_maintain in its own transaction: drop a table of pgsched.history_detached (removed), else detach the oldest passed time partition of finished jobs (dropped: its jobs are gone), else create the nearest missing one ahead; at most one DDL, so its locks are held for that one only. busy counts what could not get its lock within p_lock_timeout (a busy detach ends the step: every other detach and create needs the same locks).';

CREATE OR REPLACE FUNCTION pgsched.history_maintain(p_width interval, p_at timestamptz, p_max_ahead integer DEFAULT 400,
                                                    p_lock_timeout text DEFAULT '100ms')
    RETURNS TABLE(created integer, dropped integer, busy integer)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    step record;
BEGIN
    created := 0; dropped := 0; busy := 0;
    LOOP
        SELECT * INTO step FROM pgsched.history_maintain_step(p_width, p_at, p_max_ahead, p_lock_timeout);
        created := created + step.created;
        dropped := dropped + step.dropped;
        busy := busy + step.busy;
        EXIT WHEN step.created = 0 AND step.dropped = 0 AND step.removed = 0;
    END LOOP;
    RETURN NEXT;
END $$;
