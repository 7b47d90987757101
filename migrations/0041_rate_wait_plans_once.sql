-- 0041: pgsched.rate_wait (the idle worker's "when does a rate-limited queue earn its next token", part of
-- job_next_due_in) was a SQL function with its own search_path, which PostgreSQL cannot inline and, before version 18,
-- plans afresh on every call: its query reads pgsched.jobs, so each call planned a scan of every partition (jobs_live
-- and each time partition of finished jobs). That planning was about 1 ms of the ~1.2 ms of every job_next_due_in,
-- which an idle worker runs after each wake-up. As PL/pgSQL its plan is kept for the session, and a worker none of
-- whose queues has a rate limit (the common case) stops at one probe of the queues' primary key. Same answers.

CREATE OR REPLACE FUNCTION pgsched.rate_wait(p_queues text[], p_at timestamptz) RETURNS double precision
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgsched.queues s WHERE s.name = ANY (p_queues) AND s.rate_limit IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    RETURN (
        SELECT min((1 - least(b.burst, b.level)) * extract(epoch FROM s.rate_period) / s.rate_limit)
          FROM pgsched.queues s
         CROSS JOIN LATERAL (
                SELECT coalesce(s.rate_burst, greatest(1, ceil(s.rate_limit / 20.0)))::float8 AS burst,
                       CASE WHEN s.tokens IS NULL OR s.refilled_at IS NULL THEN 1e9
                            ELSE s.tokens + greatest(0, extract(epoch FROM p_at - s.refilled_at))
                                            * s.rate_limit / extract(epoch FROM s.rate_period)
                       END AS level) b
         WHERE s.name = ANY (p_queues) AND s.rate_limit IS NOT NULL AND NOT s.paused AND b.level < 1
           AND (EXISTS (SELECT 1 FROM pgsched.jobs j
                         WHERE j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue = s.name AND j.run_at <= p_at)
                OR EXISTS (SELECT 1 FROM pgsched.jobs j
                            WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue = s.name
                              AND j.run_at <= p_at)));
END $$;
