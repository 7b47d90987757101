-- 0055: the claim asks pgsched.keyed_queued whether a queue has a queued job with a concurrency key, rather than
-- probing pgsched.jobs itself. Its probe (the queue's first key, in jobs_keyed_claim_idx's order) was planned inside
-- the claim, where the queue comes from a join: when the statistics said that jobs_queued was empty (a vacuum after a
-- drain leaves reltuples 0 over the pages it keeps) and a backlog had come since, a custom plan read jobs_waiting_idx
-- and sorted it by key: every queued job of every queue, at every claim (43,088 rows for a claim of 100). Here the
-- queue is the function's parameter and sorting is off while its statement is planned: jobs_keyed_claim_idx is the
-- only index ordered by key within a queue, so no plan can read another one (or the table) and sort (as
-- pgsched.claim_limited, whose statements are planned with sorting off, reads it for the same question).

CREATE FUNCTION pgsched.keyed_queued(p_queue text) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    SET enable_sort TO off
    SET jit TO off
    AS $$
BEGIN
    RETURN (SELECT j.concurrency_key FROM pgsched.jobs j
             WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue = p_queue
             ORDER BY j.concurrency_key LIMIT 1) IS NOT NULL;
END $$;
COMMENT ON FUNCTION pgsched.keyed_queued(p_queue text) IS
    'Whether the queue holds a queued job with a concurrency key: one probe of jobs_keyed_claim_idx, whatever the statistics (the claim calls it to decide whether keyed work is waiting).';
