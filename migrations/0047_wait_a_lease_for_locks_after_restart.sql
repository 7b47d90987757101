-- 0047: after a database restart a worker's free advisory lock counts against it only from a lease after the restart.
-- Every lock goes with the old server, and each worker takes its own again when it reconnects (its reconnect backoff
-- is capped at one heartbeat). The reaper gave it two heartbeats (the grace) from the reaper's own reconnect: one
-- heartbeat of margin, which a busy machine (a crash test beside the rest of the suite) overran, so live workers
-- were taken for dead, their rows deleted and their started jobs charged 'worker lost' and run again. Within a lease
-- of a restart the reaper now waits for the heartbeat rule alone (a heartbeat older than the lease, counted from the
-- restart too), as it always did for workers without a lock; after that the lock rule applies as before. The cost:
-- jobs of a worker that died during the outage are taken back a lease after the restart (30 s by default) rather
-- than a grace (10 s). worker_delete_dead (sql/maintenance.sql) follows the same rule.

CREATE OR REPLACE FUNCTION pgsched.job_reap_lost(p_lease double precision, p_grace double precision, p_max_losses integer) RETURNS TABLE(job_id bigint, job_state text, job_charged boolean)
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    WITH since AS MATERIALIZED (
        -- lock_at: a free lock counts from a lease after the restart (every lock went with the old server; a
        -- worker reconnecting on a busy machine may take longer than the grace, and a live worker taken for dead
        -- is charged and its jobs run twice), so within a lease of a restart only a stale heartbeat tells.
        SELECT r.at, r.at + make_interval(secs => greatest(p_lease - p_grace, 0)) AS lock_at
          FROM (SELECT greatest(pg_postmaster_start_time(),
                                CASE WHEN a.backend_start < pg_postmaster_start_time() + make_interval(secs => p_lease)
                                     THEN a.backend_start END) AS at
                  FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()) r
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
                OR (greatest(w.heartbeat_at, (SELECT s.lock_at FROM since s)) < clock_timestamp() - make_interval(secs => p_grace)
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

