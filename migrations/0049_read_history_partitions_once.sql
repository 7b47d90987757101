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
