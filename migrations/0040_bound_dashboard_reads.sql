-- 0040: the reads of the API and the dashboard keep to a page whatever the statistics (tests/api/test_view_plans.py).
--
-- The queued jobs that failed before (the dashboard's retrying page and its count, polled with every page) have
-- an index of their own. Both read jobs_waiting_idx (every queued job) and kept those with attempt > 0: with few or
-- no retries waiting, each poll of the count read the whole backlog (42,500 queued jobs for a count of 0 in
-- tests/api/test_view_plans.py; a million-job backlog, a million rows every poll). The index holds only jobs queued
-- again after a failure, so enqueues and claims add nothing to it.
CREATE INDEX jobs_retrying_idx ON pgsched.jobs_live (run_at, id) WHERE state = 'queued' AND attempt > 0;
COMMENT ON INDEX pgsched.jobs_retrying_idx IS 'Queued jobs that failed before, in run_at order: the dashboard''s retrying page and count read them alone.';

-- The count is a function whose plan may not scan jobs_live whole: planned while jobs_live was analyzed empty (all
-- jobs finished), a sequential scan looked free, and the API's generic plan kept it (44,800 rows a poll in
-- tests/api/test_view_plans.py). No JIT: a disabled node's 1e10 cost is far past jit_above_cost.
CREATE FUNCTION pgsched.retrying_count(p_cap integer) RETURNS integer
    LANGUAGE sql STABLE
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
SELECT count(*)::int FROM (SELECT 1 FROM pgsched.jobs WHERE state = 'queued' AND attempt > 0 LIMIT p_cap + 1) AS capped
$$;
COMMENT ON FUNCTION pgsched.retrying_count(p_cap integer) IS 'How many queued jobs failed before, counted up to p_cap + 1 (one more than the cap means more), through jobs_retrying_idx alone whatever the statistics.';

-- GET /jobs, GET /dead and the dashboard's list of all jobs (a page of jobs, newest id first) are a function whose plan may not scan a partition whole
-- nor sort it: planned while jobs_live was vacuumed empty after a drain (reltuples 0 over its kept pages, 0033), the
-- plain page of GET /jobs sorted every live job (67,800 rows read for 51, and the dashboard's 88,800); every partition has an index on id, read
-- from the top. Its plan is generic and kept per server session, as job_get's (0029): the state prunes the partitions
-- of other states when the plan starts (a list of six that are all the state asked for, else every state), and the
-- cursor is an index bound. JIT is off: a disabled node costs 1e10, past jit_above_cost.
CREATE FUNCTION pgsched.job_list(p_state pgsched.job_state, p_queue text, p_task text, p_before_id bigint,
                                 p_limit integer, p_args jsonb DEFAULT NULL, p_floor_id bigint DEFAULT 0)
    RETURNS SETOF pgsched.jobs
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET jit TO 'off'
    AS $$
BEGIN
    RETURN QUERY
    SELECT * FROM pgsched.jobs j
     WHERE j.state IN (coalesce(p_state, 'waiting'), coalesce(p_state, 'queued'), coalesce(p_state, 'running'),
                       coalesce(p_state, 'succeeded'), coalesce(p_state, 'dead'), coalesce(p_state, 'cancelled'))
       AND (p_queue IS NULL OR j.queue = p_queue)
       AND (p_task IS NULL OR j.task = p_task)
       AND (p_args IS NULL OR j.args @> p_args)
       AND j.id > p_floor_id
       AND j.id < coalesce(p_before_id, 9223372036854775807)
     ORDER BY j.id DESC
     LIMIT p_limit;
END $$;
COMMENT ON FUNCTION pgsched.job_list(pgsched.job_state, text, text, bigint, integer, jsonb, bigint) IS 'A page of jobs newest first (optionally of one state, queue, task, whose args contain p_args), ids between p_floor_id and p_before_id: through the id index of each partition of that state, whatever the statistics; its generic plan is cached per server session.';
