-- 0032: pgsched.history_maintain (0020) and pgsched.history_maintain_step (0025) each carried the rule of which time
-- partitions of finished jobs to drop and which to create ahead. history_maintain now repeats the step until a step
-- neither drops nor creates one, so the rule has one home, the step. It still runs in its caller's transaction (for
-- SQL of your own and the history bench; the leader calls the step, one transaction each). Same signature and
-- result: the partitions dropped and created, and busy, the tries whose lock was not free within p_lock_timeout
-- (a busy passed partition is tried again by each later step, as the leader's steps do).

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
        EXIT WHEN step.created = 0 AND step.dropped = 0;
    END LOOP;
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION pgsched.history_maintain(interval, timestamptz, integer, text) IS 'Every step of pgsched.history_maintain_step in the caller''s transaction, until none is left: drop the time partitions of finished jobs whose purge_at range has passed, and create those of width p_width ahead (up to the longest retention plus one width, at most p_max_ahead in the future). Its locks are held until the caller commits; the leader calls the step instead, one transaction each.';
