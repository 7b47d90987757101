-- 0008: the API's edges. Every function of schema pgsched gets a fixed search_path (a caller's
-- search_path can no longer redirect the names inside it); API tokens get an optional expiry;
-- queue counts get a small table the leader refreshes, so /queues and /metrics never aggregate
-- the whole jobs table per request.

DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'pgsched'::regnamespace AND p.prokind IN ('f', 'p')
    LOOP
        EXECUTE format('ALTER ROUTINE %s SET search_path = pg_catalog, pgsched', fn);
    END LOOP;
END $$;

ALTER TABLE pgsched.api_tokens ADD COLUMN expires_at timestamptz;
COMMENT ON COLUMN pgsched.api_tokens.expires_at IS 'After this time the token is refused; NULL: it never expires.';

CREATE TABLE pgsched.queue_counts (
    queue           text PRIMARY KEY,
    due             bigint NOT NULL,
    scheduled       bigint NOT NULL,
    running         bigint NOT NULL,
    succeeded       bigint NOT NULL,
    dead            bigint NOT NULL,
    cancelled       bigint NOT NULL,
    oldest_due_at   timestamptz,
    counted_at      timestamptz NOT NULL
);
COMMENT ON TABLE pgsched.queue_counts IS 'Per-queue job counts as of counted_at, refreshed by the leader after each prune. The API reads exact counts from the hot indexes while a state holds few rows and falls back to these when it holds many; pgsched.queue_stats stays exact (and costs a full scan).';
COMMENT ON COLUMN pgsched.queue_counts.queue IS 'Queue name.';
COMMENT ON COLUMN pgsched.queue_counts.due IS 'Queued jobs whose run_at had passed at counted_at.';
COMMENT ON COLUMN pgsched.queue_counts.scheduled IS 'Queued jobs with a future run_at at counted_at.';
COMMENT ON COLUMN pgsched.queue_counts.running IS 'Running jobs at counted_at.';
COMMENT ON COLUMN pgsched.queue_counts.succeeded IS 'Succeeded jobs not yet pruned at counted_at.';
COMMENT ON COLUMN pgsched.queue_counts.dead IS 'Dead jobs at counted_at.';
COMMENT ON COLUMN pgsched.queue_counts.cancelled IS 'Cancelled jobs not yet pruned at counted_at.';
COMMENT ON COLUMN pgsched.queue_counts.oldest_due_at IS 'run_at of the oldest due job at counted_at.';
COMMENT ON COLUMN pgsched.queue_counts.counted_at IS 'When the leader counted.';
