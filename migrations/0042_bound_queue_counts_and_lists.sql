-- 0042: GET /queues (polled by the dashboard, and read by every /metrics scrape) is a function whose plan reads each
-- queue's queued jobs through the claim indexes, whatever the statistics said when it was planned.
--
-- The per-queue counts (and the walk over the queues that have queued jobs) read at most cap + 1 jobs of a queue,
-- but nothing made them read the queue's own jobs: planned while jobs_live was vacuumed empty after a drain
-- (reltuples 0 over its kept pages, 0033), reading jobs_waiting_idx (every queued job) with a filter on the queue cost
-- the same as the claim index with the queue as its bound, and the plan read the whole backlog once per queue:
-- 697,610 rows a call on a table of ~90,000 in tests/api/test_view_plans.py. Here each of those reads is ordered as
-- its claim index (jobs_claim_idx, jobs_keyed_claim_idx) and the plan may not scan a partition whole nor sort, so the
-- claim index with the queue as its bound is the only plan left; the finished counts read each state's latest
-- finishes through jobs_finished_idx as before. Same answers (a capped count reads the first cap + 1 jobs in claim
-- order). The plan is generic and kept per server session; JIT is off (a disabled node costs 1e10, past
-- jit_above_cost: before, AdminStore turned it off for the transaction).
CREATE FUNCTION pgsched.queue_counts_list(p_cap integer, p_now timestamptz)
    RETURNS TABLE (queue text, due bigint, scheduled bigint, running bigint, succeeded bigint, dead bigint,
                   cancelled bigint, oldest_due_seconds double precision, paused boolean, concurrency_limit integer,
                   rate_limit integer, rate_period_seconds double precision, running_keys bigint,
                   counts_age_seconds double precision)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_sort TO 'off'
    SET jit TO 'off'
    AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
BEGIN
    RETURN QUERY
    WITH RECURSIVE queued_names(queue) AS (
        SELECT ''::text
        UNION ALL
        SELECT least((SELECT j.queue FROM pgsched.jobs j
                       WHERE j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue > q.queue
                       ORDER BY j.queue LIMIT 1),
                     (SELECT j.queue FROM pgsched.jobs j
                       WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue > q.queue
                       ORDER BY j.queue LIMIT 1))
          FROM queued_names q
         WHERE q.queue IS NOT NULL
    ),
    running AS (
        SELECT j.queue, count(*) AS running, count(DISTINCT j.concurrency_key) AS running_keys
          FROM pgsched.jobs j WHERE j.state = 'running' GROUP BY j.queue
    ),
    finished AS (
        SELECT f.queue,
               count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE f.state = 'dead') AS dead,
               count(*) FILTER (WHERE f.state = 'cancelled') AS cancelled
          FROM unnest('{succeeded,dead,cancelled}'::pgsched.job_state[]) AS s(state)
         CROSS JOIN LATERAL (SELECT j.state, j.queue FROM pgsched.jobs j
                              WHERE j.state = s.state AND j.finished_at IS NOT NULL
                              ORDER BY j.finished_at DESC
                              LIMIT p_cap + 1) f
         GROUP BY f.queue
    ),
    capped AS (
        SELECT coalesce(sum(f.succeeded), 0) > p_cap AS succeeded,
               coalesce(sum(f.dead), 0) > p_cap AS dead,
               coalesce(sum(f.cancelled), 0) > p_cap AS cancelled
          FROM finished f
    ),
    names AS (
        SELECT qn.queue FROM queued_names qn WHERE qn.queue <> ''
        UNION SELECT r.queue FROM running r
        UNION SELECT f.queue FROM finished f
        UNION SELECT c.queue FROM pgsched.queue_counts c
        UNION SELECT s.name FROM pgsched.queues s
    ),
    live AS (
        SELECT n.queue, h.total > p_cap AS queued_capped, h.due, h.scheduled, h.oldest_due_at
          FROM names n
         CROSS JOIN LATERAL (
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE q.run_at <= v_now) AS due,
                   count(*) FILTER (WHERE q.run_at > v_now) AS scheduled,
                   min(q.run_at) FILTER (WHERE q.run_at <= v_now) AS oldest_due_at
              FROM ((SELECT j.run_at FROM pgsched.jobs j
                      WHERE j.queue = n.queue AND j.state = 'queued' AND j.concurrency_key IS NULL
                      ORDER BY j.queue, j.priority DESC, j.run_at, j.id
                      LIMIT p_cap + 1)
                    UNION ALL
                    (SELECT j.run_at FROM pgsched.jobs j
                      WHERE j.queue = n.queue AND j.state = 'queued' AND j.concurrency_key IS NOT NULL
                      ORDER BY j.queue, j.concurrency_key, j.priority DESC, j.run_at, j.id
                      LIMIT p_cap + 1)) q
         ) h
    )
    SELECT l.queue,
           CASE WHEN l.queued_capped THEN coalesce(c.due, l.due) ELSE l.due END,
           CASE WHEN l.queued_capped THEN coalesce(c.scheduled, l.scheduled) ELSE l.scheduled END,
           coalesce(r.running, 0),
           CASE WHEN k.succeeded THEN coalesce(c.succeeded, f.succeeded, 0) ELSE coalesce(f.succeeded, 0) END,
           CASE WHEN k.dead THEN coalesce(c.dead, f.dead, 0) ELSE coalesce(f.dead, 0) END,
           CASE WHEN k.cancelled THEN coalesce(c.cancelled, f.cancelled, 0) ELSE coalesce(f.cancelled, 0) END,
           extract(epoch FROM v_now - CASE WHEN l.queued_capped THEN coalesce(c.oldest_due_at, l.oldest_due_at)
                                           ELSE l.oldest_due_at END)::float8,
           coalesce(s.paused, false),
           s.concurrency,
           s.rate_limit,
           extract(epoch FROM s.rate_period)::float8,
           coalesce(r.running_keys, 0),
           CASE WHEN l.queued_capped OR k.succeeded OR k.dead OR k.cancelled
                THEN extract(epoch FROM v_now - c.counted_at)::float8
           END
      FROM live l
     CROSS JOIN capped k
      LEFT JOIN running r ON r.queue = l.queue
      LEFT JOIN finished f ON f.queue = l.queue
      LEFT JOIN pgsched.queue_counts c ON c.queue = l.queue
      LEFT JOIN pgsched.queues s ON s.name = l.queue
     ORDER BY l.queue;
END $$;
COMMENT ON FUNCTION pgsched.queue_counts_list(integer, timestamptz) IS 'Per-queue counts for /queues and /metrics at a bounded cost whatever the statistics: exact from the claim indexes and the latest finishes while a state has at most p_cap rows, else the leader''s queue_counts (counts_age_seconds says how old); its generic plan is cached per server session.';

-- The dashboard's lists of one state are functions too, for the same reason: planned from statistics that say a
-- partition is empty (a new time partition, jobs_live after a drain or with every job finished), a bitmap scan and a
-- sort of every job of the state, or a sequential scan of jobs_live, looked free, and a generic plan kept it
-- (tests/api/test_view_plans.py: the succeeded page read 60,000 rows for 51, the available page 85,000, the running,
-- scheduled and retrying pages 44,800). Each reads its index in the page's order, from the cursor: the finished
-- jobs jobs_finished_idx (latest first), the queued ones jobs_waiting_idx or jobs_retrying_idx (run_at order); the
-- running ones, which no index orders, are the running set read through jobs_running_idx and sorted. The labelled
-- lists (API and dashboard) read the label indexes (GIN: bitmap scans only) and then the jobs by id, never a
-- partition whole. Same answers; generic plans kept per server session; no JIT.
CREATE FUNCTION pgsched.dashboard_jobs_finished(p_state pgsched.job_state, p_queue text, p_task text,
                                                p_after_at timestamptz, p_after_id bigint, p_limit integer)
    RETURNS SETOF pgsched.jobs
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_sort TO 'off'
    SET jit TO 'off'
    AS $$
BEGIN
    RETURN QUERY
    SELECT * FROM pgsched.jobs j
     WHERE j.state = p_state AND j.finished_at IS NOT NULL
       AND (p_queue IS NULL OR j.queue = p_queue)
       AND (p_task IS NULL OR j.task = p_task)
       AND j.finished_at <= coalesce(p_after_at, 'infinity')
       AND (j.finished_at < coalesce(p_after_at, 'infinity') OR j.id < p_after_id)
     ORDER BY j.finished_at DESC, j.id DESC
     LIMIT p_limit;
END $$;
COMMENT ON FUNCTION pgsched.dashboard_jobs_finished(pgsched.job_state, text, text, timestamptz, bigint, integer) IS 'A page of jobs of one finished state, latest finish first, after the cursor (p_after_at, p_after_id): through jobs_finished_idx whatever the statistics.';

CREATE FUNCTION pgsched.dashboard_jobs_waiting(p_retrying boolean, p_due boolean, p_later boolean, p_now timestamptz,
                                               p_queue text, p_task text, p_after_at timestamptz, p_after_id bigint,
                                               p_limit integer)
    RETURNS SETOF pgsched.jobs
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_sort TO 'off'
    SET jit TO 'off'
    AS $$
BEGIN
    IF p_retrying THEN  -- jobs queued again after a failure: jobs_retrying_idx holds them alone
        RETURN QUERY
        SELECT * FROM pgsched.jobs j
         WHERE j.state = 'queued' AND j.attempt > 0
           AND (p_queue IS NULL OR j.queue = p_queue)
           AND (p_task IS NULL OR j.task = p_task)
           AND (j.run_at, j.id) > (coalesce(p_after_at, '-infinity'), coalesce(p_after_id, 0))
         ORDER BY j.run_at, j.id
         LIMIT p_limit;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT * FROM pgsched.jobs j
     WHERE j.state = 'queued'
       AND j.run_at > CASE WHEN p_later THEN coalesce(p_now, now()) ELSE '-infinity' END
       AND j.run_at <= CASE WHEN p_due THEN coalesce(p_now, now()) ELSE 'infinity' END
       AND (p_queue IS NULL OR j.queue = p_queue)
       AND (p_task IS NULL OR j.task = p_task)
       AND (j.run_at, j.id) > (coalesce(p_after_at, '-infinity'), coalesce(p_after_id, 0))
     ORDER BY j.run_at, j.id
     LIMIT p_limit;
END $$;
COMMENT ON FUNCTION pgsched.dashboard_jobs_waiting(boolean, boolean, boolean, timestamptz, text, text, timestamptz, bigint, integer) IS 'A page of queued jobs in run_at order after the cursor (p_after_at, p_after_id): due by p_now, due later, or (p_retrying) those that failed before; through jobs_waiting_idx or jobs_retrying_idx whatever the statistics.';

CREATE FUNCTION pgsched.dashboard_jobs_running(p_queue text, p_task text, p_worker_id bigint, p_after_at timestamptz,
                                               p_after_id bigint, p_limit integer)
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
     WHERE j.state = 'running'
       AND (p_queue IS NULL OR j.queue = p_queue)
       AND (p_task IS NULL OR j.task = p_task)
       AND (p_worker_id IS NULL OR j.worker_id = p_worker_id)
       AND (p_after_at IS NULL OR (j.started_at, j.id) > (p_after_at, p_after_id))
     ORDER BY j.started_at, j.id
     LIMIT p_limit;
END $$;
COMMENT ON FUNCTION pgsched.dashboard_jobs_running(text, text, bigint, timestamptz, bigint, integer) IS 'A page of running jobs, longest running first, after the cursor (p_after_at, p_after_id): the running set read through jobs_running_idx, never jobs_live whole, whatever the statistics.';

CREATE FUNCTION pgsched.job_list_labelled(p_tags text[], p_meta jsonb, p_state pgsched.job_state, p_queue text,
                                          p_task text, p_before_id bigint, p_limit integer)
    RETURNS SETOF pgsched.jobs
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    AS $$
BEGIN
    RETURN QUERY
    SELECT * FROM pgsched.jobs j
     WHERE j.id = ANY (ARRAY(
             SELECT t.id FROM pgsched.jobs t
              WHERE cardinality(p_tags) > 0 AND t.tags <> '{}' AND t.tags @> p_tags
             UNION ALL
             SELECT m.id FROM pgsched.jobs m
              WHERE cardinality(p_tags) = 0 AND m.meta <> '{}' AND m.meta @> p_meta))
       AND j.meta @> p_meta
       AND j.state IN (coalesce(p_state, 'waiting'), coalesce(p_state, 'queued'), coalesce(p_state, 'running'),
                       coalesce(p_state, 'succeeded'), coalesce(p_state, 'dead'), coalesce(p_state, 'cancelled'))
       AND (p_queue IS NULL OR j.queue = p_queue)
       AND (p_task IS NULL OR j.task = p_task)
       AND j.id < coalesce(p_before_id, 9223372036854775807)
     ORDER BY j.id DESC
     LIMIT p_limit;
END $$;
COMMENT ON FUNCTION pgsched.job_list_labelled(text[], jsonb, pgsched.job_state, text, text, bigint, integer) IS 'A page of jobs newest first holding every tag of p_tags (jobs_tags_idx), else whose meta contains p_meta (jobs_meta_idx), optionally of one state, queue, task, ids below p_before_id: the matching ids read in the label indexes, then those jobs by id, never a partition whole, whatever the statistics.';
