-- 0050: the finish read only jobs_running. Its rows are fenced on (id, lease), and only a running job holds a lease
-- (every way out of running clears it: the finish, the reaper, a hand-back, the claim's expiry), yet its predicate
-- (state NOT IN the final states) also kept jobs_queued, whose primary key was probed for every id of every batch and
-- never matched: about a tenth of the finish's index reads. The predicate now names every other state: the planner
-- prunes to jobs_running, and still cannot prove "state = 'running'", so no partial index on one state is a way in
-- (only the primary key finds a row, whatever the statistics). The claim's update (sql/worker.sql) likewise reads
-- jobs_queued alone: its rows are locked there by pgsched.claim_candidates.

CREATE OR REPLACE FUNCTION pgsched.job_finish_many(p_now timestamp with time zone, p_ids bigint[], p_leases bigint[], p_outcomes text[], p_results text[], p_errors text[], p_delays double precision[], p_finals boolean[], p_snooze_limits integer[]) RETURNS TABLE(job_id bigint, job_state text)
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
         WHERE j.id = d.id AND j.lease = d.lease AND j.id = ANY (p_ids)
           AND j.state NOT IN ('waiting', 'queued', 'succeeded', 'dead', 'cancelled')  -- jobs_running alone
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
