-- 0051: the claim's update reads the rows it just locked by their tuple id. pgsched.claim_candidates locks them in
-- jobs_queued and now also returns each row's ctid; job_claim_batch (sql/worker.sql) updates "ctid = ANY(those)"
-- instead of "id = ANY(those ids)". A TID scan visits one heap tuple per claimed job, whatever the statistics and
-- however many dead entries the primary key holds; the primary-key bitmap probe it replaces read about 4.6 buffers
-- per id (a descent per array element), about a third of the claim's server time on a 300-job batch mid-drain.
-- The tuple id is exact: a locked, live row cannot be moved or its slot reused before the statement ends. A row the
-- function locked under a newer snapshot than the update's (enqueued or changed during the claim) is not visible to
-- the update at that tid and stays queued, as an id match that finds no visible row left it before.
-- The return type changes, so the function is dropped and made again (plpgsql callers resolve it at their next run;
-- a worker of the previous release still reads id, priority and run_at, which keep their names and order).

DROP FUNCTION pgsched.claim_candidates(text, timestamptz, integer);

CREATE FUNCTION pgsched.claim_candidates(p_queue text, p_at timestamptz, p_limit integer)
    RETURNS TABLE(id bigint, priority smallint, run_at timestamptz, row_tid tid)
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_sort TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    SELECT j.id, j.priority, j.run_at, j.ctid FROM pgsched.jobs j
     WHERE j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue = p_queue AND j.run_at <= p_at
     ORDER BY j.priority DESC, j.run_at, j.id
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED;
END $$;

COMMENT ON FUNCTION pgsched.claim_candidates(text, timestamptz, integer) IS 'The worker''s claim: up to p_limit due queued jobs of queue p_queue without a concurrency key, in claim order (priority, run_at, id), locked, skipping those another claim holds; read through jobs_claim_idx in its order whatever the statistics say. row_tid is the locked row''s ctid in jobs_queued (the claim''s update reads the rows by it).';
