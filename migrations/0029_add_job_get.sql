-- 0029: one job by id, with a plan PostgreSQL keeps per session whatever the client's prepared-statement policy.
-- `id` is not a partition key of pgsched.jobs, so `SELECT * FROM pgsched.jobs WHERE id = $1` plans every partition
-- (jobs_live, each time partition of jobs_done, jobs_done_default) on each unprepared call: with 1 M finished jobs
-- that was 2.7 ms over 7 day partitions, 6.2 ms over 30 and 19 ms over 90 (70 ms on a fresh session), almost all
-- planning; probing each partition's index costs ~10 us. A PL/pgSQL function caches its statement's plan for the
-- life of the server session, so behind a pooler (no client-side PREPARE) the plan is made once per server backend.
-- force_generic_plan: a custom plan could prune nothing more (no partition key in the condition), so the first
-- five calls need not plan again. enable_seqscan off: the plan outlives the statistics it was made with, and a
-- partition empty then (a new day, jobs_done_default) would otherwise keep a sequential scan once it fills; every
-- partition has an index on id. LIMIT 1: ids are unique (one sequence), and the scan stops at the partition
-- holding the job.

CREATE FUNCTION pgsched.job_get(p_id bigint) RETURNS SETOF pgsched.jobs
    LANGUAGE plpgsql STABLE ROWS 1
    SET search_path TO 'pg_catalog', 'pgsched'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgsched.jobs j WHERE j.id = p_id LIMIT 1;
END $$;
COMMENT ON FUNCTION pgsched.job_get(bigint) IS 'One job by id, wherever it lives (jobs_live, a time partition, jobs_done_default): the one by-id read of every caller (API, CLI, result(), run-key holders). Its plan is generic and cached per server session, so a call does not plan every partition again.';
