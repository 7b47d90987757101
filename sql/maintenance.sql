-- name: job_reap_lost
-- Re-queue running jobs whose worker is gone (no row, stale heartbeat, or lock free past a grace); dead when out of attempts or a poison pill; cancelled when a cancel was pending; NOTIFY pgsched_done for ended jobs a result waiter waits on.
WITH lost AS (
    SELECT j.id, j.attempt
      FROM pgsched.jobs j
      LEFT JOIN pgsched.workers w ON w.id = j.worker_id
     WHERE j.state = 'running'
       AND (w.id IS NULL
            OR w.heartbeat_at < clock_timestamp() - make_interval(secs => %(lease)s::float8)
            OR (w.heartbeat_at < clock_timestamp() - make_interval(secs => %(grace)s::float8)
                AND NOT EXISTS (
                    SELECT 1 FROM pg_locks l
                     WHERE l.locktype = 'advisory' AND l.granted
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND l.classid = pgsched.lock_namespace()::oid AND l.objid = j.worker_id::oid
                       AND l.objsubid = 2)))
       FOR UPDATE OF j SKIP LOCKED
), judged AS (
    SELECT j.id, j.attempt,
           j.attempt >= j.max_attempts
           OR (SELECT count(*) FROM jsonb_array_elements(j.errors) e WHERE e ->> 'kind' = 'worker_lost') + 1
              >= %(max_losses)s::int AS final
      FROM pgsched.jobs j JOIN lost ON lost.id = j.id
), reaped AS (
    UPDATE pgsched.jobs j
       SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                        WHEN d.final THEN 'dead' ELSE 'queued' END::pgsched.job_state,
           run_at = CASE WHEN d.final OR j.cancel_requested_at IS NOT NULL THEN j.run_at ELSE clock_timestamp() END,
           finished_at = CASE WHEN d.final OR j.cancel_requested_at IS NOT NULL THEN clock_timestamp() END,
           errors = j.errors || jsonb_build_array(jsonb_build_object(
               'at', clock_timestamp(), 'attempt', j.attempt, 'error', 'worker lost', 'kind', 'worker_lost',
               'worker_id', j.worker_id, 'traceback', NULL))
      FROM judged d
     WHERE j.id = d.id AND j.attempt = d.attempt AND j.state = 'running'
    RETURNING j.id, j.state::text AS state
), told AS (
    -- One primary-key probe per ended job (see job_finish_many: LIMIT keeps it keyed in any plan).
    SELECT count(pg_notify('pgsched_done', r.id::text)) AS sent
      FROM reaped r
     CROSS JOIN LATERAL (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = r.id LIMIT 1) waited
     WHERE r.state <> 'queued'
)
SELECT reaped.id, reaped.state FROM reaped, told

-- name: worker_delete_dead
-- Remove registry rows of processes that are gone: heartbeat past the lease, or lock free past the grace.
DELETE FROM pgsched.workers w
 WHERE w.heartbeat_at < clock_timestamp() - make_interval(secs => %(lease)s::float8)
    OR (w.heartbeat_at < clock_timestamp() - make_interval(secs => %(grace)s::float8)
        AND NOT EXISTS (
            SELECT 1 FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid = pgsched.lock_namespace()::oid AND l.objid = w.id::oid AND l.objsubid = 2))
RETURNING w.id

-- name: job_prune
-- Delete up to n finished jobs of one state older than the retention, oldest first.
WITH doomed AS (
    SELECT id FROM pgsched.jobs
     WHERE state = %(state)s::pgsched.job_state
       AND finished_at IS NOT NULL
       AND finished_at < coalesce(%(now)s::timestamptz, clock_timestamp()) - make_interval(secs => %(retention)s::float8)
     ORDER BY finished_at
     LIMIT %(limit)s::int
       FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM pgsched.jobs j USING doomed WHERE j.id = doomed.id RETURNING 1
)
SELECT count(*)::int AS deleted FROM gone

-- name: result_waiter_prune
-- Delete result waiters whose session is gone (a waiting process that died before removing its row).
WITH gone AS (
    DELETE FROM pgsched.result_waiters w
     WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.backend_pid)
    RETURNING 1
)
SELECT count(*)::int AS deleted FROM gone
