-- name: job_reap_lost
-- Hand back running jobs whose worker is gone (no row, stale heartbeat, or lock free past a grace; a worker without a session for its lock (heartbeat_lease_seconds set) only by heartbeat age), and jobs whose own lease ran out
-- (heartbeat(): extended_until passed under the current lease, even while the worker beats: charged, kind 'lease_expired'). A job whose own
-- lease still holds is not taken for a stale worker heartbeat alone (its attempt is demonstrably alive). Fair blame: only a job the worker had
-- published as started (workers.started), or one already handed back uncharged max_losses times, is charged a loss (errors entry
-- 'worker_lost'; dead when out of attempts or past the loss limit; one loss short of the limit it runs alone from then on:
-- jobs.alone); so is a job whose worker row is gone
-- (nothing to tell; a worker without its row claims nothing). The others go back uncharged
-- (attempt given back, returns + 1). Either way the job keeps its run_at (rescue first: its old place in line). Cancelled when a
-- cancel was pending. NOTIFY pgsched_done for ended jobs a result waiter waits on.
-- After a database restart every worker's lock is free until it reconnects, so heartbeats count from the restart: the
-- server's start, or this session's start when it opened within a lease of the server's (it waited out crash recovery);
-- and a free lock counts only from a lease after it (0047): until then only a stale heartbeat tells a worker lost.
-- pgsched.job_reap_lost (0043): reads the running jobs only through jobs_running_idx, whatever the statistics.
SELECT r.job_id AS id, r.job_state AS state, r.job_charged AS charged
  FROM pgsched.job_reap_lost(%(lease)s::float8, %(grace)s::float8, %(max_losses)s::int) r

-- name: worker_delete_dead
-- Remove registry rows of processes that are gone, by the rules job_reap_lost takes jobs back by (pgsched.worker_lapse:
-- a heartbeat past the lease, or a free lock past the grace, both counted from pgsched.restart_marks). The rule is
-- evaluated on the row itself, so a heartbeat committed meanwhile is seen by the recheck.
WITH since AS MATERIALIZED (
    SELECT m.at, m.lock_at FROM pgsched.restart_marks(%(lease)s::float8, %(grace)s::float8) m
)
DELETE FROM pgsched.workers w
 WHERE (SELECT g.stale OR g.lock_free
          FROM pgsched.worker_lapse(w.id, w.heartbeat_at, w.heartbeat_lease_seconds, %(lease)s::float8,
                                    %(grace)s::float8, (SELECT s.at FROM since s), (SELECT s.lock_at FROM since s)) g)
RETURNING w.id

-- name: retention_defaults_set
-- Leader: write the default retention per final state (queue *) from its settings, so SQL computes purge_at; a queue's own rows stay.
INSERT INTO pgsched.retention AS r (queue, state, keep)
SELECT '*', d.state, make_interval(secs => d.seconds)
  FROM unnest(%(states)s::pgsched.job_state[], %(seconds)s::float8[]) AS d(state, seconds)
ON CONFLICT (queue, state) DO UPDATE SET keep = EXCLUDED.keep, updated_at = now()
 WHERE r.keep IS DISTINCT FROM EXCLUDED.keep

-- name: history_maintain_step
-- Leader: one step of pgsched.history_maintain, in its own transaction: drop one detached table (removed), else detach one passed time partition (dropped), else create one ahead, at most max_ahead (pgsched.history_maintain_step).
SELECT created, dropped, busy, removed
  FROM pgsched.history_maintain_step(make_interval(secs => %(width)s::float8), coalesce(%(now)s::timestamptz, now()),
                                     %(max_ahead)s::int)

-- name: history_default_prune
-- Leader: delete up to limit finished jobs of the default partition (no time partition for them yet, or no purge_at) past their retention.
WITH doomed AS (
    SELECT d.id FROM pgsched.jobs_done_default d
     WHERE coalesce(d.purge_at, pgsched.purge_at(d.queue, d.state, coalesce(d.finished_at, d.created_at)))
           <= coalesce(%(now)s::timestamptz, now())
     LIMIT %(limit)s::int
       FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM pgsched.jobs_done_default j USING doomed WHERE j.id = doomed.id RETURNING 1
), recount AS (  -- this session's statistics reach the counters only later: mark the partition for a recount now
    DELETE FROM pgsched.history_count_marks m
     WHERE m.part = 'pgsched.jobs_done_default'::regclass AND EXISTS (SELECT 1 FROM gone)
)
SELECT count(*)::int AS deleted FROM gone

-- name: history_count_watermark_lock
-- Leader: lock the history counters' watermark for one pass, or get no row when another leader holds it; the window (since, upto] of finish times to add.
SELECT w.upto AS since,
       greatest(w.upto, coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(settle)s::float8)) AS upto
  FROM pgsched.history_count_watermark w
   FOR UPDATE SKIP LOCKED

-- name: history_counts_add
-- Leader: add the jobs finished in (since, upto] to their partition's counters (jobs_finished_idx), move the watermark to upto, and forget partitions no longer in jobs_done.
WITH added AS (
    INSERT INTO pgsched.history_counts AS c (part, queue, state, jobs)
    SELECT f.part, f.queue, f.state, f.jobs
      FROM pgsched.history_finished_between(%(since)s::timestamptz, %(upto)s::timestamptz) f
    ON CONFLICT (part, queue, state) DO UPDATE SET jobs = c.jobs + EXCLUDED.jobs
    RETURNING 1
), moved AS (
    UPDATE pgsched.history_count_watermark SET upto = %(upto)s::timestamptz
), gone_counts AS (
    DELETE FROM pgsched.history_counts c
     WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.part AND i.inhparent = 'pgsched.jobs_done'::regclass)
), gone_marks AS (
    DELETE FROM pgsched.history_count_marks m
     WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = m.part AND i.inhparent = 'pgsched.jobs_done'::regclass)
)
SELECT count(*)::int AS added FROM added

-- name: history_count_recount
-- Leader: count whole the one partition of jobs_done that changed behind the counters (or was never counted, or not for every seconds); no row when none needs it.
SELECT part::text AS part, jobs FROM pgsched.history_count_recount(coalesce(%(now)s::timestamptz, now()),
                                                                    make_interval(secs => %(every)s::float8))

-- name: job_dependency_prune
-- Leader: of the next limit dependents after job id "after" (a sweep the leader keeps going round by round), delete the edges of those whose job is gone (its time partition was dropped: no trigger fired); returns how many edges went and the last dependent looked at (NULL: the sweep is through, start again). Bounded work per call, whatever the size of the edges table.
WITH batch AS MATERIALIZED (
    SELECT DISTINCT e.job_id FROM pgsched.job_dependencies e
     WHERE e.job_id > %(after)s::bigint
     ORDER BY e.job_id
     LIMIT %(limit)s::int
), gone AS (
    DELETE FROM pgsched.job_dependencies e USING batch b
     WHERE e.job_id = b.job_id AND NOT EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.id = b.job_id)
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone)::int AS deleted,
       (SELECT max(b.job_id) FROM batch b) AS last_id

-- name: run_key_prune
-- Delete up to n run_keys rows whose holder no longer holds the key over its scope (oldest first). Candidates are
-- locked, then judged again by pgsched.run_key_stale, which sees what was committed by then: a holder brought
-- back meanwhile (a redrive takes the same row lock) keeps its key, and a row taken over meanwhile is not deleted.
WITH candidates AS MATERIALIZED (
    SELECT k.run_key, k.job_id
      FROM pgsched.run_keys k LEFT JOIN pgsched.jobs j ON j.id = k.job_id
     WHERE CASE k.scope WHEN 'period' THEN k.held_until <= coalesce(%(now)s::timestamptz, now())
                        WHEN 'active' THEN j.id IS NULL OR j.state NOT IN ('waiting', 'queued', 'running')
                        ELSE j.id IS NULL END
     ORDER BY k.created_at
     LIMIT %(limit)s::int
       FOR UPDATE OF k SKIP LOCKED
), gone AS (
    DELETE FROM pgsched.run_keys k USING candidates c
     WHERE k.run_key = c.run_key AND k.job_id = c.job_id
       AND pgsched.run_key_stale(k.scope, k.held_until, k.job_id, coalesce(%(now)s::timestamptz, now()))
    RETURNING 1
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

-- name: job_expire_due
-- Leader: end up to limit never-started jobs past their deadline to start as expired (cancelled, errors entry of kind "expired"),
-- read through jobs_expiring_idx only (its predicate, without state, is what the query says); NOTIFY pgsched_done for waited ones.
WITH due AS (
    SELECT j.id FROM pgsched.jobs j
     WHERE j.expires_at IS NOT NULL AND j.started_at IS NULL AND j.finished_at IS NULL
       AND j.state IN ('waiting', 'queued')
       AND j.expires_at <= coalesce(%(now)s::timestamptz, now())
     ORDER BY j.expires_at
     LIMIT %(limit)s::int
       FOR UPDATE SKIP LOCKED
), gone AS (
    UPDATE pgsched.jobs j
       SET state = 'cancelled',
           finished_at = coalesce(%(now)s::timestamptz, now()),
           errors = j.errors || pgsched.expired_entry(j.expires_at, coalesce(%(now)s::timestamptz, now()))
     WHERE j.id = ANY (ARRAY(SELECT due.id FROM due)) AND j.state NOT IN ('succeeded', 'dead', 'cancelled')  -- locked above: jobs_queued's primary key
    RETURNING j.id, j.queue, j.task
), told AS (
    SELECT count(pg_notify('pgsched_done', gone.id::text)) AS sent
      FROM gone
     CROSS JOIN LATERAL (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = gone.id LIMIT 1) waited
     WHERE EXISTS (SELECT 1 FROM pgsched.result_waiters)
)
SELECT gone.id, gone.queue, gone.task FROM gone, told

-- name: live_partitions_to_vacuum
-- Leader (pgsched.live_vacuum): the live partitions whose dead tuples (the cumulative statistics' count) passed the
-- bound: at least min_dead and at least share of their live ones; may_vacuum says whether this role may vacuum the
-- table (its owner or a member of the owner's role, a superuser, or from PostgreSQL 17 the MAINTAIN privilege).
SELECT c.relname AS name, s.n_dead_tup AS dead, s.n_live_tup AS live,
       pg_has_role(c.relowner, 'USAGE')
       OR CASE WHEN current_setting('server_version_num')::int >= 170000
               THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE false END AS may_vacuum
  FROM pg_class c
  JOIN pg_stat_all_tables s ON s.relid = c.oid
 WHERE c.oid IN ('pgsched.jobs_queued'::regclass, 'pgsched.jobs_running'::regclass)
   AND s.n_dead_tup >= greatest(%(min_dead)s::bigint, %(share)s::float8 * s.n_live_tup)
 ORDER BY s.n_dead_tup DESC
