-- 0045: the lists of one state (GET /dead, GET /jobs?state=cancelled, succeeded, running) read about a page, however
-- long the history or the backlog.
--
-- pgsched.job_list (0040) reads each partition's id index from the top and filters on the state. The time partitions
-- of jobs_done hold whatever finished in their purge_at range, mostly succeeded jobs: a page of dead (or cancelled)
-- jobs read every succeeded job with a higher id first (tests/api/test_view_plans.py: 21,452 rows for GET /dead's
-- 51; with 50,000,000 succeeded jobs in history, minutes a request). Dead jobs and cancelled jobs get an index on id
-- each, partial, so finishing a succeeded job (the hot path) inserts nothing into them; a list of one of these states
-- reads only its rows, newest id first, a merge of each partition's top entries. One index per state, on id alone:
-- an index on (state, id) is ordered on the state first, which the planner costs as random heap reads (the state's
-- correlation) and so preferred the id index and its filter whenever the statistics said the state was common.
-- Built in this migration's transaction: it reads the whole history and blocks finishes meanwhile (see CHANGELOG:
-- built beforehand with CREATE INDEX CONCURRENTLY on each partition, they are attached instead).
CREATE INDEX jobs_done_dead_idx ON pgsched.jobs_done (id) WHERE state = 'dead';
COMMENT ON INDEX pgsched.jobs_done_dead_idx IS 'Dead jobs by id, in every partition of jobs_done (a succeeded job adds nothing): GET /dead reads a page of it.';
CREATE INDEX jobs_done_cancelled_idx ON pgsched.jobs_done (id) WHERE state = 'cancelled';
COMMENT ON INDEX pgsched.jobs_done_cancelled_idx IS 'Cancelled jobs by id, in every partition of jobs_done (a succeeded job adds nothing): GET /jobs?state=cancelled reads a page of it.';

-- The running jobs of GET /jobs?state=running are the running set read through jobs_running_idx and sorted (as the
-- dashboard's running page, 0042): jobs_live's id index from the top read every queued job with a higher id first.
-- The succeeded ones are read in the time partitions holding one (a partition of dead or cancelled jobs only was read
-- whole before the merge could start: 2,053 rows for 51), with no index added. The other lists are as in 0040.
CREATE OR REPLACE FUNCTION pgsched.job_list(p_state pgsched.job_state, p_queue text, p_task text, p_before_id bigint,
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
    -- Running jobs: the running set, bounded by the workers' concurrency, read whole (no LIMIT, no bound on id inside:
    -- a range on id of unknown bounds is estimated at 0.5 % of the rows, which made jobs_live's id index look cheaper
    -- than jobs_running_idx) and sorted.
    IF p_state = 'running' THEN
        RETURN QUERY
        WITH running AS MATERIALIZED (
            SELECT * FROM pgsched.jobs j
             WHERE j.state = 'running'
               AND (p_queue IS NULL OR j.queue = p_queue) AND (p_task IS NULL OR j.task = p_task)
               AND (p_args IS NULL OR j.args @> p_args)
        )
        SELECT * FROM running r
         WHERE r.id > p_floor_id AND r.id < coalesce(p_before_id, 9223372036854775807)
         ORDER BY r.id DESC LIMIT p_limit;
        RETURN;
    END IF;
    -- Dead and cancelled jobs: the state as a literal, which the partial index's predicate needs in a generic plan.
    IF p_state = 'dead' THEN
        RETURN QUERY
        SELECT * FROM pgsched.jobs j
         WHERE j.state = 'dead'
           AND (p_queue IS NULL OR j.queue = p_queue) AND (p_task IS NULL OR j.task = p_task)
           AND (p_args IS NULL OR j.args @> p_args)
           AND j.id > p_floor_id AND j.id < coalesce(p_before_id, 9223372036854775807)
         ORDER BY j.id DESC LIMIT p_limit;
        RETURN;
    END IF;
    IF p_state = 'cancelled' THEN
        RETURN QUERY
        SELECT * FROM pgsched.jobs j
         WHERE j.state = 'cancelled'
           AND (p_queue IS NULL OR j.queue = p_queue) AND (p_task IS NULL OR j.task = p_task)
           AND (p_args IS NULL OR j.args @> p_args)
           AND j.id > p_floor_id AND j.id < coalesce(p_before_id, 9223372036854775807)
         ORDER BY j.id DESC LIMIT p_limit;
        RETURN;
    END IF;
    -- Succeeded jobs: only the time partitions holding one, each read from its top (a page at most) and merged, and
    -- jobs_done_default (meant to stay small: rows wait there for their partition), never a partition of dead or
    -- cancelled jobs whole. A partition holds one if jobs_finished_idx has one (a probe: the index's first entry of
    -- the state; current, whatever the leader counted) or pgsched.history_counts counted one (one without finished_at,
    -- which that index leaves out; only hand-made SQL finishes a job without it). The bounds of each partition prune
    -- the read to it when it runs.
    IF p_state = 'succeeded' THEN
        RETURN QUERY
        WITH parts AS MATERIALIZED (
            SELECT b.purge_from, b.purge_to
              FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
             CROSS JOIN LATERAL (
                SELECT substring(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']*)''\)')::timestamptz AS purge_from,
                       substring(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']*)''\)')::timestamptz AS purge_to) b
             WHERE i.inhparent = 'pgsched.jobs_done'::regclass AND b.purge_to IS NOT NULL
               AND ((SELECT f.finished_at FROM pgsched.jobs f  -- ordered as the index: no other plan reads one row
                      WHERE f.state = 'succeeded' AND f.finished_at IS NOT NULL
                        AND f.purge_at >= b.purge_from AND f.purge_at < b.purge_to
                      ORDER BY f.finished_at LIMIT 1) IS NOT NULL
                    OR EXISTS (SELECT 1 FROM pgsched.history_counts h
                                WHERE h.part = c.oid AND h.state = 'succeeded' AND h.jobs > 0))
        )
        SELECT s.* FROM (
            SELECT l.* FROM parts p
             CROSS JOIN LATERAL (
                SELECT * FROM pgsched.jobs j
                 WHERE j.state = 'succeeded' AND j.purge_at >= p.purge_from AND j.purge_at < p.purge_to
                   AND (p_queue IS NULL OR j.queue = p_queue) AND (p_task IS NULL OR j.task = p_task)
                   AND (p_args IS NULL OR j.args @> p_args)
                   AND j.id > p_floor_id AND j.id < coalesce(p_before_id, 9223372036854775807)
                 ORDER BY j.id DESC LIMIT p_limit) l
            UNION ALL
            (SELECT * FROM pgsched.jobs_done_default d
              WHERE d.state = 'succeeded'
                AND (p_queue IS NULL OR d.queue = p_queue) AND (p_task IS NULL OR d.task = p_task)
                AND (p_args IS NULL OR d.args @> p_args)
                AND d.id > p_floor_id AND d.id < coalesce(p_before_id, 9223372036854775807)
              ORDER BY d.id DESC LIMIT p_limit)
        ) s
        ORDER BY s.id DESC LIMIT p_limit;
        RETURN;
    END IF;
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
COMMENT ON FUNCTION pgsched.job_list(pgsched.job_state, text, text, bigint, integer, jsonb, bigint) IS 'A page of jobs newest first (optionally of one state, queue, task, whose args contain p_args), ids between p_floor_id and p_before_id, whatever the statistics: running jobs through jobs_running_idx (the running set, sorted), dead and cancelled ones through jobs_done_dead_idx and jobs_done_cancelled_idx, the others through the id index of each partition of that state; its generic plans are cached per server session.';
