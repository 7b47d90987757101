-- 0049: the leader's history step read the list of time partitions once per slot it looked at, twice: the count of
-- partitions ahead in its loop condition, and the overlap check of pgsched.history_partition_create. Each read deparsed
-- every partition's bound three times (pg_get_expr). Creating the partitions ahead from none was quadratic (33 one-day
-- partitions: 561 reads, about 4 s of server CPU at a leader's first start, beside the workers' drain), and each prune
-- round at steady state still read the list once per existing partition ahead (33 reads a round; with 400 partitions
-- ahead, 800 reads of 400 rows each, in one step the leader's time budget cannot cut short).
-- Now the view deparses each bound once, and a step reads the list once: the first slot from now that no partition
-- overlaps is found in memory, then created (history_partition_create still checks under its own read).
-- A step also takes the advisory transaction lock (lock_namespace(), -2) first, or ends as busy: `pgsched migrate` now
-- creates the partitions ahead too, and may run beside a leader.
-- And history_partition_create locks the default partition before it moves that partition's rows of the new range: a
-- create of a range jobs were finishing into (a leader started beside running producers, or one that fell behind)
-- failed its ATTACH on a row that arrived after the move, and the leader stepped down and failed again every round.

CREATE OR REPLACE VIEW pgsched.history_partitions AS
SELECT c.relname AS name,
       substring(b.bound FROM 'FROM \(''([^'']*)''\)')::timestamptz AS purge_from,
       substring(b.bound FROM 'TO \(''([^'']*)''\)')::timestamptz AS purge_to,
       c.reltuples::bigint AS rows_estimate,
       pg_total_relation_size(c.oid) AS bytes
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
 CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound OFFSET 0) b  -- OFFSET 0: deparsed once a row
 WHERE i.inhparent = 'pgsched.jobs_done'::regclass AND b.bound <> 'DEFAULT';

CREATE OR REPLACE FUNCTION pgsched.history_maintain_step(p_width interval, p_at timestamptz,
                                                         p_max_ahead integer DEFAULT 400,
                                                         p_lock_timeout text DEFAULT '100ms')
    RETURNS TABLE(created integer, dropped integer, busy integer, removed integer)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    w double precision := extract(epoch FROM p_width);
    lo timestamptz;
    upto timestamptz;
    passed text;
    froms timestamptz[];
    tos timestamptz[];
    ahead bigint;
BEGIN
    created := 0; dropped := 0; busy := 0; removed := 0;
    IF w IS NULL OR w < 1 THEN
        RAISE EXCEPTION 'pgsched.history_maintain_step: the partition width must be at least 1 second, got %', p_width
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    -- One maintainer at a time (a leader, `pgsched migrate`, a lost leader finishing its round): two creating the same
    -- partition would have one fail on the name or the overlap. The other's step ends here, as with a busy lock.
    IF NOT pg_try_advisory_xact_lock(pgsched.lock_namespace(), -2) THEN
        busy := 1;
        RETURN NEXT;
        RETURN;
    END IF;
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
    -- The time partitions, read once for the rest of the step.
    SELECT (array_agg(h.name ORDER BY h.purge_to) FILTER (WHERE h.purge_to <= p_at))[1],
           coalesce(array_agg(h.purge_from), '{}'), coalesce(array_agg(h.purge_to), '{}'),
           count(*) FILTER (WHERE h.purge_to > p_at)
      INTO passed, froms, tos, ahead
      FROM pgsched.history_partitions h;
    -- Then the oldest passed partition: detached now, dropped by the next step.
    IF passed IS NOT NULL THEN
        BEGIN
            PERFORM pgsched.history_partition_detach(passed);
            dropped := 1;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy + 1;  -- a create needs the same lock on jobs_done_default: the step ends here either way
        END;
        RETURN NEXT;
        RETURN;
    END IF;
    -- Else the nearest missing partition ahead (up to the longest retention plus one width, at most p_max_ahead ahead):
    -- the first slot from now that no partition overlaps, in the list read above.
    IF ahead >= p_max_ahead THEN
        RETURN NEXT;
        RETURN;
    END IF;
    lo := to_timestamp(floor(extract(epoch FROM p_at) / w) * w);
    upto := p_at + (SELECT coalesce(max(r.keep), interval '0') FROM pgsched.retention r) + p_width;
    WHILE lo < upto LOOP
        IF NOT EXISTS (SELECT 1 FROM unnest(froms, tos) AS h(purge_from, purge_to)
                        WHERE h.purge_from < lo + p_width AND h.purge_to > lo) THEN
            BEGIN
                IF pgsched.history_partition_create(lo, lo + p_width) THEN
                    created := 1;
                    EXIT;
                END IF;
            EXCEPTION WHEN lock_not_available THEN
                busy := busy + 1;
                EXIT;  -- the default partition is busy: every other create would wait as long
            END;
        END IF;
        lo := lo + p_width;
    END LOOP;
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION pgsched.history_maintain_step(interval, timestamptz, integer, text) IS 'Leader: one step of pgsched.history_maintain in its own transaction: drop a table of pgsched.history_detached (removed), else detach the oldest passed time partition of finished jobs (dropped: its jobs are gone), else create the nearest missing one ahead; at most one DDL, so its locks are held for that one only. The time partitions are read once a step (0049), and one session maintains them at a time (advisory transaction lock (lock_namespace(), -2); another ends its step as busy). busy counts what could not get its lock within p_lock_timeout (a busy detach ends the step: every other detach and create needs the same locks).';

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
    -- The default partition is locked before its rows of this range move: a job finishing meanwhile would route its row
    -- there (no partition for it yet), and ATTACH would then fail on it ("updated partition constraint for default
    -- partition would be violated"), round after round while jobs kept finishing into the range. ATTACH takes this
    -- lock anyway; taking it first (within the step's lock_timeout, else busy) holds the finishes for the move too.
    LOCK TABLE pgsched.jobs_done_default IN ACCESS EXCLUSIVE MODE;
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
