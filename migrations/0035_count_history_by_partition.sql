-- 0035: the finished counts of pgsched.queue_counts (succeeded, dead, cancelled not yet pruned) no longer come from a
-- count of every finished job once a prune interval (50 M rows a minute with a 50 M-job history). The leader keeps
-- counters per time partition, queue and state (pgsched.history_counts): each pass adds the jobs finished since its
-- watermark (jobs_finished_idx), and recounts whole a partition whose rows left otherwise (a delete, a retry moving a
-- row back to jobs_live; seen in the partition's statistics counters, or marked by the leader's own deletes),
-- or that was last counted longer ago than the heal period. Dropping a partition drops its counters in the same
-- transaction. Nothing is added to the claim or the finish. This migration counts the existing history once.

CREATE TABLE pgsched.history_counts (
    part    oid NOT NULL,
    queue   text NOT NULL,
    state   pgsched.job_state NOT NULL,
    jobs    bigint NOT NULL,
    PRIMARY KEY (part, queue, state)
);
COMMENT ON TABLE pgsched.history_counts IS 'Finished jobs per partition of jobs_done, queue and state, kept by the leader: those finished at or before pgsched.history_count_watermark.upto (or without finished_at). queue_counts adds the jobs finished after it.';
COMMENT ON COLUMN pgsched.history_counts.part IS 'The partition of pgsched.jobs_done (a time partition or jobs_done_default) holding the jobs: its oid, as tableoid says.';
COMMENT ON COLUMN pgsched.history_counts.queue IS 'Queue of the jobs.';
COMMENT ON COLUMN pgsched.history_counts.state IS 'Final state of the jobs: succeeded, dead or cancelled.';
COMMENT ON COLUMN pgsched.history_counts.jobs IS 'How many.';

CREATE TABLE pgsched.history_count_marks (
    part        oid PRIMARY KEY,
    changes     text,
    counted_at  timestamptz NOT NULL
);
COMMENT ON TABLE pgsched.history_count_marks IS 'When the leader last counted each partition of jobs_done whole, and what its statistics said then: a partition without a row here, whose changes differ now, or counted longer ago than the heal period, is counted again.';
COMMENT ON COLUMN pgsched.history_count_marks.part IS 'The partition (oid).';
COMMENT ON COLUMN pgsched.history_count_marks.changes IS 'pgsched.history_partition_changes(part) read just before the count.';
COMMENT ON COLUMN pgsched.history_count_marks.counted_at IS 'When it was counted.';

CREATE TABLE pgsched.history_count_watermark (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    upto       timestamptz NOT NULL
);
COMMENT ON TABLE pgsched.history_count_watermark IS 'One row: jobs finished at or before upto are in pgsched.history_counts; the leader''s pass adds those finished after it, then moves it.';
COMMENT ON COLUMN pgsched.history_count_watermark.only_row IS 'Always true: the table holds one row.';
COMMENT ON COLUMN pgsched.history_count_watermark.upto IS 'finished_at up to which jobs are counted.';

CREATE FUNCTION pgsched.history_partition_changes(p_part oid) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
    SELECT concat_ws(':', pg_relation_filenode(p_part), pg_stat_get_tuples_deleted(p_part),
                     extract(epoch FROM pg_stat_get_db_stat_reset_time(
                         (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))))
$$;
COMMENT ON FUNCTION pgsched.history_partition_changes(oid) IS 'What the statistics say of rows leaving a partition: its file (TRUNCATE), its rows deleted (a retry''s or any move out counts as a delete; a finish moving in is an insert, not counted) and the database''s statistics reset time. Updates in place are left out: an enqueue naming a finished job in depends_on updates it, and would have its whole partition counted again. PostgreSQL publishes a session''s counters within about 1 s of its commit when it goes idle, within 60 s when busy.';

CREATE FUNCTION pgsched.history_finished_between(p_since timestamptz, p_upto timestamptz)
    RETURNS TABLE(part oid, queue text, state pgsched.job_state, jobs bigint)
    LANGUAGE plpgsql STABLE
    SET enable_seqscan TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    SELECT j.tableoid, j.queue, j.state, count(*) FROM pgsched.jobs j
     WHERE j.state IN ('succeeded', 'dead', 'cancelled') AND j.finished_at > p_since AND j.finished_at <= p_upto
     GROUP BY j.tableoid, j.queue, j.state;
END $$;
COMMENT ON FUNCTION pgsched.history_finished_between(timestamptz, timestamptz) IS 'Jobs finished in (p_since, p_upto] per partition of jobs_done, queue and state, read through each partition''s jobs_finished_idx whatever the statistics say (a range whose bound the planner cannot see is estimated at a third of the table: it would read partitions whole).';

CREATE FUNCTION pgsched.history_count_recount(p_at timestamptz, p_every interval)
    RETURNS TABLE(part regclass, jobs bigint)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    w timestamptz;
    p oid;
    seen text;
BEGIN
    -- The watermark's lock keeps the leader's add pass out (and a second leader: no row, nothing done).
    SELECT h.upto INTO w FROM pgsched.history_count_watermark h FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_stat_clear_snapshot();
    -- Changed (or never counted) first, then the one counted longest ago if past p_every. The changes are read before
    -- the count's snapshot: a change they miss is committed after it, and changes them again later.
    SELECT c.oid, c.now_changes INTO p, seen
      FROM (SELECT i.inhrelid AS oid, pgsched.history_partition_changes(i.inhrelid) AS now_changes,
                   m.changes, m.counted_at
              FROM pg_inherits i
              LEFT JOIN pgsched.history_count_marks m ON m.part = i.inhrelid
             WHERE i.inhparent = 'pgsched.jobs_done'::regclass) c
     WHERE c.counted_at IS NULL OR c.changes IS DISTINCT FROM c.now_changes OR c.counted_at <= p_at - p_every
     ORDER BY (c.counted_at IS NULL OR c.changes IS DISTINCT FROM c.now_changes) DESC, c.counted_at NULLS FIRST
     LIMIT 1;
    IF p IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM pgsched.history_counts c WHERE c.part = p;
    EXECUTE format('INSERT INTO pgsched.history_counts (part, queue, state, jobs) '
                   'SELECT %s, d.queue, d.state, count(*) FROM %s d '
                   'WHERE d.finished_at <= $1 OR d.finished_at IS NULL GROUP BY d.queue, d.state', p, p::regclass)
        USING w;
    INSERT INTO pgsched.history_count_marks AS m (part, changes, counted_at) VALUES (p, seen, p_at)
        ON CONFLICT ON CONSTRAINT history_count_marks_pkey
        DO UPDATE SET changes = EXCLUDED.changes, counted_at = EXCLUDED.counted_at;
    part := p::regclass;
    jobs := (SELECT coalesce(sum(c.jobs), 0) FROM pgsched.history_counts c WHERE c.part = p);
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION pgsched.history_count_recount(timestamptz, interval) IS 'Leader: count whole one partition of jobs_done into pgsched.history_counts (the jobs finished up to the watermark): one that rows left since it was counted (or never counted), else the one counted longest ago if that is at least p_every before p_at. Returns it and its jobs, or no row when none needs it.';

-- A partition's counters go with it, in the same transaction, without counting its rows.
CREATE OR REPLACE FUNCTION pgsched.history_partition_drop(p_name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    p oid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgsched.history_partitions h WHERE h.name = p_name) THEN
        RAISE EXCEPTION 'pgsched.history_partition_drop: % is not a time partition of pgsched.jobs_done', quote_literal(p_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    p := to_regclass('pgsched.' || quote_ident(p_name));
    EXECUTE format('ALTER TABLE pgsched.jobs_done DETACH PARTITION pgsched.%I', p_name);
    EXECUTE format('DROP TABLE pgsched.%I', p_name);
    DELETE FROM pgsched.history_counts c WHERE c.part = p;
    DELETE FROM pgsched.history_count_marks m WHERE m.part = p;
END $$;

-- Rows moved out of the default partition make it (and the new partition, never counted) due for a recount at once:
-- the leader's own statistics reach the counters only later.
CREATE OR REPLACE FUNCTION pgsched.history_partition_create(p_from timestamptz, p_to timestamptz) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $_$
DECLARE
    name text := 'jobs_done_' || to_char(p_from AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MISS');
    moved bigint;
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
    GET DIAGNOSTICS moved = ROW_COUNT;
    PERFORM set_config('pgsched.moving', 'off', true);
    IF moved > 0 THEN
        DELETE FROM pgsched.history_count_marks m WHERE m.part = 'pgsched.jobs_done_default'::regclass;
    END IF;
    EXECUTE format('ALTER TABLE pgsched.jobs_done ATTACH PARTITION pgsched.%I FOR VALUES FROM (%L) TO (%L)', name, p_from, p_to);
    EXECUTE format('COMMENT ON TABLE pgsched.%I IS %L', name,
                   format('Finished jobs whose purge_at is in [%s, %s): dropped whole once past.', p_from, p_to));
    RETURN true;
END $_$;

-- The history as it is now, counted once.
INSERT INTO pgsched.history_count_watermark (only_row, upto) VALUES (true, now());
INSERT INTO pgsched.history_counts (part, queue, state, jobs)
SELECT d.tableoid, d.queue, d.state, count(*) FROM pgsched.jobs_done d
 WHERE d.finished_at <= now() OR d.finished_at IS NULL
 GROUP BY d.tableoid, d.queue, d.state;
INSERT INTO pgsched.history_count_marks (part, changes, counted_at)
SELECT i.inhrelid, pgsched.history_partition_changes(i.inhrelid), now()
  FROM pg_inherits i WHERE i.inhparent = 'pgsched.jobs_done'::regclass;
