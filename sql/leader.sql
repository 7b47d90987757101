-- name: leader_try_lock
-- Try to become leader: the session advisory lock (namespace, 0).
SELECT pg_try_advisory_lock(pgsched.lock_namespace(), 0) AS locked

-- name: leader_holds_lock
-- Whether this session still holds the leader lock.
SELECT pgsched.lock_held(0, pg_backend_pid()) AS held

-- name: leader_unlock
-- Step down: release the leader lock.
SELECT pg_advisory_unlock(pgsched.lock_namespace(), 0) AS released

-- name: leader_mark
-- Record which registered process leads (or none, with a NULL id).
UPDATE pgsched.workers SET is_leader = (id = %(worker_id)s::bigint)
 WHERE is_leader OR id = %(worker_id)s::bigint
