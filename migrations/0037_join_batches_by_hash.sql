-- 0037: the worker's batch writes (finish, progress, release) may not join their batch in a nested loop. Each joined the
-- batch (unnest of its arrays) to the jobs it names; when the statistics said jobs_live held no row (VACUUM or ANALYZE
-- after a backlog drained to nothing: reltuples 0 over thousands of kept pages, 0033), the kept plan read the jobs first
-- (one row expected) and rescanned the whole batch once per job: a flush of 940 jobs compared 883,000 pairs and took
-- 400 ms, slower flushes made bigger batches, and a soak at 4,000 jobs/s started 2,000 jobs/s for about a minute after
-- each autovacuum of jobs_live, until the next ANALYZE. Each write is now a function whose plan may not use a nested
-- loop: the batch is joined by hash (or merge), in time linear in the batch whatever the statistics; the jobs are still
-- found only through the primary key ("j.id = ANY(ids)"). JIT is off in them: the one nested loop left (the probe of
-- result waiters, which has no other way) carries the planner's 1e10 cost of a disabled node, far past jit_above_cost,
-- and compiling the finish took about a second a call.

CREATE FUNCTION pgsched.job_finish_many(
    p_now timestamptz, p_ids bigint[], p_leases bigint[], p_outcomes text[], p_results text[], p_errors text[],
    p_delays float8[], p_finals boolean[], p_snooze_limits integer[])
    RETURNS TABLE(job_id bigint, job_state text)
    LANGUAGE plpgsql
    SET enable_nestloop TO 'off'
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    WITH keeps AS MATERIALIZED (
        -- pgsched.retention as {queue: {state: keep}}: one read per statement, whatever the batch holds.
        SELECT jsonb_object_agg(q.queue, q.keeps) AS keeps
          FROM (SELECT r.queue, jsonb_object_agg(r.state, r.keep::text) AS keeps FROM pgsched.retention r GROUP BY r.queue) q
    ),
    done AS (
        UPDATE pgsched.jobs j
           -- A failed attempt is retried after its delay while attempts remain and it is not final, else dead: the one
           -- rule, the same predicate in each column (a sub-select stating it once costs a subplan per row).
           SET state = CASE
                         WHEN d.outcome = 'failed' AND j.attempt < j.max_attempts AND NOT d.final THEN 'queued'
                         WHEN d.outcome = 'failed' THEN 'dead'
                         WHEN d.outcome = 'snoozed' THEN CASE WHEN j.snoozes < d.snooze_limit THEN 'queued' ELSE 'dead' END
                         ELSE d.outcome
                       END::pgsched.job_state,
               finished_at = CASE
                               WHEN d.outcome = 'failed' AND j.attempt < j.max_attempts AND NOT d.final THEN NULL
                               WHEN d.outcome = 'snoozed' AND j.snoozes < d.snooze_limit THEN NULL
                               ELSE coalesce(p_now, now())
                             END,
               run_at = CASE
                          WHEN (d.outcome = 'failed' AND j.attempt < j.max_attempts AND NOT d.final)
                            OR (d.outcome = 'snoozed' AND j.snoozes < d.snooze_limit)
                          THEN coalesce(p_now, now()) + make_interval(secs => d.delay)
                          ELSE j.run_at
                        END,
               attempt = CASE WHEN d.outcome = 'snoozed' AND j.snoozes < d.snooze_limit THEN j.attempt - 1 ELSE j.attempt END,
               snoozes = CASE WHEN d.outcome = 'snoozed' AND j.snoozes < d.snooze_limit THEN j.snoozes + 1 ELSE j.snoozes END,
               lease = NULL,
               -- Set here, not by the jobs_purge_at trigger: the time partition the row moves to. The retention of its queue,
               -- else of queue * (pgsched.purge_at's rule, inline: a function with a pinned search_path costs ~15 us a call),
               -- looked up in keeps (read once per statement: a sub-select per row cost a fifth of the finish's server CPU).
               -- Neither: NULL, and the jobs_purge_at trigger applies the default.
               purge_at = CASE
                            WHEN (d.outcome = 'failed' AND j.attempt < j.max_attempts AND NOT d.final)
                              OR (d.outcome = 'snoozed' AND j.snoozes < d.snooze_limit)
                            THEN NULL
                            ELSE coalesce(p_now, now()) + coalesce(
                                   (SELECT k.keeps FROM keeps k) -> j.queue
                                     ->> CASE WHEN d.outcome IN ('failed', 'snoozed') THEN 'dead' ELSE d.outcome END,
                                   (SELECT k.keeps FROM keeps k) -> '*'
                                     ->> CASE WHEN d.outcome IN ('failed', 'snoozed') THEN 'dead' ELSE d.outcome END)::interval
                          END,
               result = CASE WHEN d.outcome = 'succeeded' THEN d.result::jsonb END,
               errors = CASE
                          WHEN d.error IS NULL THEN j.errors
                          WHEN d.outcome = 'snoozed' AND j.snoozes >= d.snooze_limit
                          THEN j.errors || jsonb_build_array(d.error::jsonb || jsonb_build_object(
                                   'kind', 'snooze_limit',
                                   'error', format('snoozed %s times, the limit of its task (max_snoozes): dead', j.snoozes)))
                          ELSE j.errors || jsonb_build_array(d.error::jsonb)
                        END
          FROM unnest(p_ids, p_leases, p_outcomes, p_results,
                      p_errors, p_delays, p_finals, p_snooze_limits)
               AS d(id, lease, outcome, result, error, delay, final, snooze_limit)
         WHERE j.id = d.id AND j.lease = d.lease AND j.id = ANY (p_ids) AND j.state NOT IN ('succeeded', 'dead', 'cancelled')
        RETURNING j.id, j.state::text AS state
    ),
    told AS (
        -- Nobody waiting on any result (the usual case): the uncorrelated EXISTS is a one-time filter, so
        -- the statement pays one probe of an empty table and never looks at its rows one by one.
        -- Otherwise one primary-key probe per ended job: a plain EXISTS became a semi-join that a plan
        -- made while nobody waited ran as a scan of every waiter per job (LIMIT keeps it keyed).
        SELECT count(pg_notify('pgsched_done', done.id::text)) AS sent
          FROM done
         CROSS JOIN LATERAL (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = done.id LIMIT 1) waited
         WHERE EXISTS (SELECT 1 FROM pgsched.result_waiters)
           AND done.state <> 'queued'
    )
    -- told is one row: joining it only makes it run.
    SELECT done.id, done.state FROM done, told;
END $$;
COMMENT ON FUNCTION pgsched.job_finish_many(timestamptz, bigint[], bigint[], text[], text[], text[], float8[], boolean[], integer[]) IS 'The worker''s finish: record finished attempts (id, lease) of one batch (sql/worker.sql job_finish_many says how); joins the batch without a nested loop, so its cost stays linear in the batch whatever the statistics.';

CREATE FUNCTION pgsched.job_progress_many(
    p_now timestamptz, p_ids bigint[], p_leases bigint[], p_fractions float8[], p_messages text[], p_extends float8[])
    RETURNS TABLE(job_id bigint)
    LANGUAGE plpgsql
    SET enable_nestloop TO 'off'
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    UPDATE pgsched.jobs j
       SET progress = coalesce(d.fraction::real, j.progress),
           progress_message = CASE WHEN d.fraction IS NULL THEN j.progress_message ELSE d.message END,
           progress_at = CASE WHEN d.fraction IS NULL THEN j.progress_at ELSE coalesce(p_now, now()) END,
           extended_lease = CASE WHEN d.extend IS NULL THEN j.extended_lease ELSE d.lease END,
           extended_until = CASE WHEN d.extend IS NULL THEN j.extended_until
                                 ELSE coalesce(p_now, now()) + make_interval(secs => d.extend) END
      FROM unnest(p_ids, p_leases, p_fractions, p_messages, p_extends) AS d(id, lease, fraction, message, extend)
     WHERE j.id = d.id AND j.lease = d.lease AND j.id = ANY (p_ids) AND j.state NOT IN ('succeeded', 'dead', 'cancelled')
    RETURNING j.id;
END $$;
COMMENT ON FUNCTION pgsched.job_progress_many(timestamptz, bigint[], bigint[], float8[], text[], float8[]) IS 'The worker''s progress and heartbeat reports of running attempts (id, lease) (sql/worker.sql job_progress_many); joins the batch without a nested loop.';

CREATE FUNCTION pgsched.job_release_leased(p_ids bigint[], p_leases bigint[], p_delay float8)
    RETURNS TABLE(job_id bigint)
    LANGUAGE plpgsql
    SET enable_nestloop TO 'off'
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    UPDATE pgsched.jobs j
       SET state = 'queued',
           attempt = j.attempt - 1,
           worker_id = NULL,
           started_at = NULL,
           lease = NULL,
           run_at = CASE WHEN p_delay IS NULL THEN j.run_at
                         ELSE greatest(j.run_at, now() + make_interval(secs => p_delay)) END
      FROM unnest(p_ids, p_leases) AS d(id, lease)
     WHERE j.id = d.id AND j.lease = d.lease AND j.id = ANY (p_ids) AND j.state NOT IN ('succeeded', 'dead', 'cancelled')
    RETURNING j.id;
END $$;
COMMENT ON FUNCTION pgsched.job_release_leased(bigint[], bigint[], float8) IS 'Hand claimed attempts (id, lease) back uncharged (sql/worker.sql job_release_leased); joins the batch without a nested loop.';
