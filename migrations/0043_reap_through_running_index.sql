-- 0043: the reaper and the reconcile read only the running jobs, whatever the statistics and however many jobs ran
-- since jobs_live was last vacuumed.
-- - job_reap_lost (the leader, every ~2 s) was planned as a sequential scan of all of jobs_live, custom and generic
--   plan alike, or as a bitmap scan of jobs_running_idx, which visits the heap page of every index entry, dead ones
--   included: both cost the heap's pages (3,430 buffers for ~100 running jobs in a 27.7 MB jobs_live; the heap only
--   grows, 0033). It is now a function whose plans may use neither: the running jobs are read through
--   jobs_running_idx by a plain index scan, which marks the entries of jobs that left (finished, requeued) dead
--   (LP_DEAD), so the next scan of the index, the reaper's or a worker's reconcile, skips them without a heap visit.
--   JIT is off, as in 0037: a node with no other way carries the 1e10 cost of a disabled one.
-- - jobs_running_idx was keyed on worker_id alone: the btree merged each worker's entries into posting lists, and a
--   posting list can be marked dead only when every job in it has left, so one job still running kept the entries of
--   hundreds that had finished, and new entries (placed by heap position) landed all over the worker's range. The
--   reconcile read every entry its worker had made since the last vacuum (27 k -> 150 k a scan in a soak, 3.1 ->
--   33.8 ms). Keyed on (worker_id, lease), without deduplication, each entry is marked dead on its own, and a
--   worker's new entries go to the end of its range (leases grow with time): pages of finished claims stop changing.

DROP INDEX pgsched.jobs_running_idx;
CREATE INDEX jobs_running_idx ON pgsched.jobs_live (worker_id, lease) WITH (deduplicate_items = off)
 WHERE state = 'running';
COMMENT ON INDEX pgsched.jobs_running_idx IS 'Running jobs per worker, in lease order (no deduplication: each entry of a job that left is marked dead on its own): the reaper and the reconcile read it.';
-- jobs_running_queue_idx (0036) is made again after it: with jobs_running_idx the newer of the two, plans made on an
-- empty jobs_live (no statistics to tell them apart) read one concurrency key's running jobs in the limited claim
-- through jobs_running_idx, the whole running set per key (216,000 rows a claim in test_limited_plans); made after
-- it, jobs_running_queue_idx is chosen as before (the tie follows the order the indexes were made).
DROP INDEX pgsched.jobs_running_queue_idx;
CREATE INDEX jobs_running_queue_idx ON pgsched.jobs_live (queue, concurrency_key)
    WHERE state = 'running' AND queue IS NOT NULL;
COMMENT ON INDEX pgsched.jobs_running_queue_idx IS
    'Running jobs per queue and concurrency key: the limited claim counts them up to the queue''s or the key''s limit.';

CREATE FUNCTION pgsched.job_reap_lost(p_lease float8, p_grace float8, p_max_losses integer)
    RETURNS TABLE(job_id bigint, job_state text, job_charged boolean)
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    WITH since AS MATERIALIZED (
        SELECT greatest(pg_postmaster_start_time(),
                        CASE WHEN a.backend_start < pg_postmaster_start_time() + make_interval(secs => p_lease)
                             THEN a.backend_start END) AS at
          FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
    ), lost AS (
        SELECT j.id, j.lease, w.id IS NULL OR j.id = ANY (w.started) OR e.expired AS started,  -- no row: unknown, so charged
               e.expired, j.extended_until
          FROM pgsched.jobs j
          LEFT JOIN pgsched.workers w ON w.id = j.worker_id
         CROSS JOIN LATERAL (
                -- A promise that lapsed while the database was down (or whose commit a crash lost) gets the grace from the restart too.
                SELECT coalesce(j.extended_lease = j.lease AND d.until < clock_timestamp(), false) AS expired,
                       coalesce(j.extended_lease = j.lease AND d.until >= clock_timestamp(), false) AS promised
                  FROM (SELECT greatest(j.extended_until,
                                        (SELECT s.at FROM since s) + make_interval(secs => p_grace)) AS until) d) e
         WHERE j.state = 'running'
           AND (w.id IS NULL
                OR e.expired
                OR (greatest(w.heartbeat_at, (SELECT s.at FROM since s)) < clock_timestamp() - make_interval(secs => p_lease)
                    AND NOT e.promised)
                OR (greatest(w.heartbeat_at, (SELECT s.at FROM since s)) < clock_timestamp() - make_interval(secs => p_grace)
                    AND w.heartbeat_lease_seconds IS NULL AND NOT pgsched.lock_held(j.worker_id)))
           FOR UPDATE OF j SKIP LOCKED
    ), blamed AS (
        SELECT lost.id, lost.lease, lost.started OR j.returns >= p_max_losses AS charged, n.losses,
               lost.expired, lost.extended_until,
               j.attempt >= j.max_attempts OR (NOT lost.expired AND n.losses + 1 >= p_max_losses) AS out
          FROM lost JOIN pgsched.jobs j ON j.id = lost.id AND j.state NOT IN ('succeeded', 'dead', 'cancelled')
         CROSS JOIN LATERAL (SELECT count(*)::int AS losses FROM jsonb_array_elements(j.errors) e
                              WHERE e ->> 'kind' = 'worker_lost') n
         WHERE j.id = ANY (ARRAY(SELECT l.id FROM lost l))
    ), reaped AS (
        UPDATE pgsched.jobs j
           SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                            WHEN d.charged AND d.out THEN 'dead' ELSE 'queued' END::pgsched.job_state,
               attempt = CASE WHEN d.charged OR j.cancel_requested_at IS NOT NULL THEN j.attempt ELSE j.attempt - 1 END,
               returns = CASE WHEN d.charged THEN j.returns ELSE j.returns + 1 END,
               alone = j.alone OR (d.charged AND NOT d.expired AND d.losses + 1 >= p_max_losses - 1),
               lease = NULL,
               started_at = CASE WHEN d.charged THEN j.started_at END,
               finished_at = CASE WHEN (d.charged AND d.out) OR j.cancel_requested_at IS NOT NULL THEN clock_timestamp() END,
               errors = CASE WHEN d.charged OR j.cancel_requested_at IS NOT NULL THEN j.errors || jsonb_build_array(pgsched.error_entry(
                   j.attempt,
                   CASE WHEN d.expired THEN format('no heartbeat: its own lease ran out at %s', d.extended_until) ELSE 'worker lost' END,
                   CASE WHEN d.expired THEN 'lease_expired' ELSE 'worker_lost' END,
                   jsonb_build_object('worker_id', j.worker_id))) ELSE j.errors END
          FROM blamed d
         WHERE j.id = d.id AND j.lease IS NOT DISTINCT FROM d.lease AND j.state = 'running'
           AND j.id = ANY (ARRAY(SELECT b.id FROM blamed b))
        RETURNING j.id, j.state::text AS state, d.charged
    ), told AS (
        -- One primary-key probe per ended job (see job_finish_many: LIMIT keeps it keyed in any plan).
        SELECT count(pg_notify('pgsched_done', r.id::text)) AS sent
          FROM reaped r
         CROSS JOIN LATERAL (SELECT 1 FROM pgsched.result_waiters rw WHERE rw.job_id = r.id LIMIT 1) waited
         WHERE r.state <> 'queued'
    )
    SELECT reaped.id, reaped.state, reaped.charged FROM reaped, told;
END
$$;
COMMENT ON FUNCTION pgsched.job_reap_lost(float8, float8, integer) IS 'The reaper''s pass (sql/maintenance.sql job_reap_lost says what it hands back and how it blames): the running jobs are read through jobs_running_idx by a plain index scan whatever the statistics (no sequential or bitmap scan: either costs the heap''s pages, dead rows included), marking the entries of jobs that left dead as it goes; no JIT.';

-- The reconcile reads its worker's range of jobs_running_idx by a plain index scan too (a bitmap scan, which the
-- planner preferred, marks nothing dead). Planner settings need a function; the statement is job_reconcile's.
CREATE FUNCTION pgsched.job_reconcile(p_worker_id bigint, p_ids bigint[], p_leases bigint[])
    RETURNS TABLE(job_id bigint)
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    WITH strays AS (
        SELECT j.id FROM pgsched.jobs j
         WHERE j.state = 'running' AND j.worker_id = p_worker_id
           AND (j.id, j.lease) NOT IN (SELECT h.id, h.lease FROM unnest(p_ids, p_leases) AS h(id, lease)
                                        WHERE h.id IS NOT NULL AND h.lease IS NOT NULL)  -- hashed: one look-up per row
           FOR UPDATE OF j SKIP LOCKED
    )
    UPDATE pgsched.jobs j
       SET state = 'queued', attempt = j.attempt - 1, worker_id = NULL, started_at = NULL, lease = NULL
     WHERE j.id = ANY (ARRAY(SELECT strays.id FROM strays)) AND j.state NOT IN ('succeeded', 'dead', 'cancelled')  -- locked above: jobs_live's primary key
    RETURNING j.id;
END
$$;
COMMENT ON FUNCTION pgsched.job_reconcile(bigint, bigint[], bigint[]) IS 'The worker''s reconcile (sql/worker.sql job_reconcile): hands back uncharged every running row under this worker id whose (id, lease) is not held; reads the worker''s running jobs through jobs_running_idx by a plain index scan (which marks the entries of jobs that left dead), by id to write; no JIT.';
