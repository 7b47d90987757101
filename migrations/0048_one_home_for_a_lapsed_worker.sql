-- 0048: one home for when a worker counts as gone. job_reap_lost (its jobs are taken back) and worker_delete_dead (its
-- registry row goes) each carried the rule, and 0047 had to change both: now pgsched.restart_marks says from when a
-- heartbeat and a free lock count after a database restart, and pgsched.worker_lapse applies the two rules to a worker.
-- The rules themselves are 0047's, unchanged.

CREATE FUNCTION pgsched.restart_marks(p_lease double precision, p_grace double precision,
                                      OUT at timestamp with time zone, OUT lock_at timestamp with time zone)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
    -- at: the later of the server's start and this session's, when the session began within a lease of the start (a
    -- reaper that reconnected after a restart gives every worker time to reconnect too). lock_at: a free lock counts
    -- only from a lease after that (every lock went with the old server, and a worker reconnecting on a busy machine may
    -- take longer than the grace; a live worker taken for dead has its jobs charged and run twice).
    SELECT r.at, r.at + make_interval(secs => greatest(p_lease - p_grace, 0))
      FROM (SELECT greatest(pg_postmaster_start_time(),
                            CASE WHEN a.backend_start < pg_postmaster_start_time() + make_interval(secs => p_lease)
                                 THEN a.backend_start END) AS at
              FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()) r
$$;

COMMENT ON FUNCTION pgsched.restart_marks(double precision, double precision) IS 'From when, after the last database restart, a worker''s heartbeat (at) and its free advisory lock (lock_at, a lease later) count against it; the input of pgsched.worker_lapse.';

CREATE FUNCTION pgsched.worker_lapse(p_worker bigint, p_heartbeat_at timestamp with time zone,
                                     p_heartbeat_lease double precision, p_lease double precision,
                                     p_grace double precision, p_at timestamp with time zone,
                                     p_lock_at timestamp with time zone, OUT stale boolean, OUT lock_free boolean)
    LANGUAGE sql VOLATILE
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
    -- The lock is looked up only for a worker silent past the grace (AND stops at the first false).
    SELECT greatest(p_heartbeat_at, p_at) < clock_timestamp() - make_interval(secs => p_lease),
           greatest(p_heartbeat_at, p_lock_at) < clock_timestamp() - make_interval(secs => p_grace)
               AND p_heartbeat_lease IS NULL AND NOT pgsched.lock_held(p_worker)
$$;

COMMENT ON FUNCTION pgsched.worker_lapse(bigint, timestamp with time zone, double precision, double precision, double precision, timestamp with time zone, timestamp with time zone) IS 'Whether a worker is gone, by either rule: stale, no heartbeat for a lease; lock_free, silent for the grace with its liveness lock free (workers that hold one: heartbeat_lease_seconds IS NULL). Both count from pgsched.restart_marks. Used by job_reap_lost (with a job''s own promised lease waiving the heartbeat rule) and by the leader''s worker_delete_dead.';

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
        SELECT m.at, m.lock_at FROM pgsched.restart_marks(p_lease, p_grace) m
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
         CROSS JOIN LATERAL pgsched.worker_lapse(w.id, w.heartbeat_at, w.heartbeat_lease_seconds, p_lease, p_grace,
                                                 (SELECT s.at FROM since s), (SELECT s.lock_at FROM since s)) g
         WHERE j.state = 'running'
           AND (w.id IS NULL OR e.expired OR (g.stale AND NOT e.promised) OR g.lock_free)
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

