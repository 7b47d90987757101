-- 0034: the plain claim walks the claim index in its order whatever the statistics say. Analyzed after a drain (a
-- handful of jobs in many pages: jobs_live keeps its pages, 0033), the planner expected almost no queued rows, and
-- the claim read every queued job through a bitmap (or another index) and sorted them all, once per claim, until the
-- next ANALYZE: in a 20-minute soak at 5,000 jobs/s the worker started 46 jobs/s for about a minute after each
-- autovacuum of jobs_live. The candidates of one queue now come from pgsched.claim_candidates, whose plan may not use a
-- bitmap scan, a sort or a sequential scan: the only plan left is the claim index read in order up to the batch.

CREATE FUNCTION pgsched.claim_candidates(p_queue text, p_at timestamptz, p_limit integer)
    RETURNS TABLE(id bigint, priority smallint, run_at timestamptz)
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_sort TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    SELECT j.id, j.priority, j.run_at FROM pgsched.jobs j
     WHERE j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue = p_queue AND j.run_at <= p_at
     ORDER BY j.priority DESC, j.run_at, j.id
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED;
END $$;
COMMENT ON FUNCTION pgsched.claim_candidates(text, timestamptz, integer) IS 'The worker''s claim: up to p_limit due queued jobs of queue p_queue without a concurrency key, in claim order (priority, run_at, id), locked, skipping those another claim holds; read through jobs_claim_idx in its order whatever the statistics say.';
