-- 0022: running behind a transaction-mode pooler without a session connection. Session advisory locks
-- do not survive there (each transaction may land on another server session), so the leader holds a
-- lease row instead, and a worker that cannot hold its liveness lock counts as alive by heartbeat age.

CREATE TABLE pgsched.leader_lease (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder     text,
    epoch      bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO pgsched.leader_lease (id) VALUES (true);
COMMENT ON TABLE pgsched.leader_lease IS 'The leader lease of candidates that reach PostgreSQL only through a transaction-mode pooler (no session for the advisory lock (pgsched.lock_namespace(), 0)): one row, renewed by its holder, taken over once expired. Every leader transaction renews it first, so two leaders never act at once.';
COMMENT ON COLUMN pgsched.leader_lease.id IS 'Always true: the table has one row.';
COMMENT ON COLUMN pgsched.leader_lease.holder IS 'The leading candidate (host:pid:token), NULL when none.';
COMMENT ON COLUMN pgsched.leader_lease.epoch IS 'Incremented each time another candidate takes the lease: the fencing token of a leadership.';
COMMENT ON COLUMN pgsched.leader_lease.expires_at IS 'The lease is free after this instant unless its holder renews it.';

ALTER TABLE pgsched.workers ADD COLUMN heartbeat_lease_seconds double precision
    CHECK (heartbeat_lease_seconds > 0);
COMMENT ON COLUMN pgsched.workers.heartbeat_lease_seconds IS 'NULL: the process holds its liveness lock (pgsched.lock_namespace(), id) while alive. A number: it has no session for the lock (behind a transaction-mode pooler) and counts as alive while its heartbeat is younger than this many seconds.';

CREATE OR REPLACE VIEW pgsched.cluster AS
SELECT w.id, w.role, w.host, w.pid, w.queues, w.concurrency, w.version, w.started_at, w.heartbeat_at,
       now() - w.heartbeat_at AS heartbeat_age,
       CASE WHEN w.heartbeat_lease_seconds IS NULL THEN pgsched.lock_held(w.id)
            ELSE w.heartbeat_at > now() - make_interval(secs => w.heartbeat_lease_seconds) END AS alive,
       w.is_leader
  FROM pgsched.workers w;
COMMENT ON COLUMN pgsched.cluster.alive IS 'Whether the process is alive: its liveness lock is held, or (without a session, workers.heartbeat_lease_seconds set) its heartbeat is recent.';

CREATE FUNCTION pgsched.leader_present() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pgsched
AS $$
    SELECT pgsched.lock_held(0)
        OR EXISTS (SELECT 1 FROM pgsched.leader_lease l WHERE l.holder IS NOT NULL AND l.expires_at > clock_timestamp())
$$;
COMMENT ON FUNCTION pgsched.leader_present() IS 'Whether some candidate leads: it holds the leader lock (pgsched.lock_namespace(), 0), or an unexpired pgsched.leader_lease.';
