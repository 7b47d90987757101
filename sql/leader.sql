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

-- name: leader_lease_take
-- Lease mode (no session for the lock): take the lease when it is free or expired, or renew it when this holder has it; the epoch (fencing token) or no row. SKIP LOCKED: a leader's transaction in progress (which holds the row) means it leads.
WITH free AS (
    SELECT id FROM pgsched.leader_lease
     WHERE holder = %(holder)s::text OR holder IS NULL OR expires_at < clock_timestamp()
       FOR UPDATE SKIP LOCKED
)
UPDATE pgsched.leader_lease l
   SET epoch = CASE WHEN l.holder IS DISTINCT FROM %(holder)s::text THEN l.epoch + 1 ELSE l.epoch END,
       holder = %(holder)s::text,
       expires_at = clock_timestamp() + make_interval(secs => %(ttl)s::float8)
  FROM free WHERE l.id = free.id
RETURNING l.epoch

-- name: leader_lease_renew
-- Lease mode: extend the lease this holder still has under this epoch, unexpired; no row means leadership is lost. Run first in each leader transaction, it also fences it: the row stays locked until commit, so no one takes over mid-way.
UPDATE pgsched.leader_lease
   SET expires_at = clock_timestamp() + make_interval(secs => %(ttl)s::float8)
 WHERE holder = %(holder)s::text AND epoch = %(epoch)s::bigint AND expires_at > clock_timestamp()
RETURNING epoch

-- name: leader_lease_release
-- Lease mode: give the lease up at once (clean shutdown), so another candidate need not wait for it to expire.
UPDATE pgsched.leader_lease SET holder = NULL, expires_at = '-infinity'
 WHERE holder = %(holder)s::text AND epoch = %(epoch)s::bigint
