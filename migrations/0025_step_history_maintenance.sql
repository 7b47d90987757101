-- 0025: the leader maintains the time partitions of finished jobs one DDL per transaction.
-- pgsched.history_maintain did every drop and create of a round in one transaction, so the lock each took (creating
-- a partition holds an ACCESS EXCLUSIVE lock on jobs_done_default, which every statement on pgsched.jobs must
-- lock) was held until the last one: with narrow partitions and a long retention (400 partitions ahead) the hot
-- path stood still for over a minute. history_maintain_step does at most one, and the leader calls it again.

CREATE FUNCTION pgsched.history_maintain_step(p_width interval, p_at timestamptz, p_max_ahead integer DEFAULT 400,
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
        RAISE EXCEPTION 'pgsched.history_maintain_step: the partition width must be at least 1 second, got %', p_width
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    -- The oldest passed partition first; one whose lock is busy is skipped (counted) and tried again next call.
    FOR p IN SELECT h.name FROM pgsched.history_partitions h WHERE h.purge_to <= p_at ORDER BY h.purge_to LOOP
        BEGIN
            PERFORM pgsched.history_partition_drop(p.name);
            dropped := 1;
            RETURN NEXT;
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy + 1;
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
COMMENT ON FUNCTION pgsched.history_maintain_step(interval, timestamptz, integer, text) IS 'Leader: one step of pgsched.history_maintain in its own transaction: drop the oldest passed time partition of finished jobs, else create the nearest missing one ahead; at most one DDL, so its locks are held for that one only. busy counts what could not get its lock within p_lock_timeout.';
