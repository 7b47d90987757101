-- 0013: one home per rule in SQL. "This process's advisory lock is held" was spelled out against
-- pg_locks in five places (cluster view, health check, leader check, reaper, dead-worker sweep), and
-- the spellings had drifted; an entry of jobs.errors written by SQL had its shape spelled inline.
-- Both become functions; the cluster view reads the lock through the first.

CREATE FUNCTION pgsched.lock_held(key bigint, holder integer DEFAULT NULL) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pgsched
AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
           AND l.classid = pgsched.lock_namespace()::oid AND l.objid = lock_held.key::oid AND l.objsubid = 2
           AND (lock_held.holder IS NULL OR l.pid = lock_held.holder))
$$;
COMMENT ON FUNCTION pgsched.lock_held(bigint, integer) IS 'Whether the session advisory lock (pgsched.lock_namespace(), key) is held in this database (by the backend holder, when given): key 0 is the leader, a worker id its liveness.';

CREATE FUNCTION pgsched.error_entry(attempt integer, error text, kind text, details jsonb DEFAULT '{}'::jsonb)
    RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pgsched
AS $$
    SELECT jsonb_build_object('at', clock_timestamp(), 'attempt', error_entry.attempt, 'error', error_entry.error,
                              'traceback', NULL, 'kind', error_entry.kind) || coalesce(error_entry.details, '{}'::jsonb)
$$;
COMMENT ON FUNCTION pgsched.error_entry(integer, text, text, jsonb) IS 'One entry of jobs.errors written by SQL: {at, attempt, error, traceback, kind} plus details; the same shape as the worker''s entries (pgsched.worker.outcome.error_entry).';

CREATE OR REPLACE VIEW pgsched.cluster AS
SELECT w.id, w.role, w.host, w.pid, w.queues, w.concurrency, w.version, w.started_at, w.heartbeat_at,
       now() - w.heartbeat_at AS heartbeat_age,
       pgsched.lock_held(w.id) AS alive,
       w.is_leader
  FROM pgsched.workers w;
