-- Queries of the worker runtime: liveness, the hot path (claim, finish), waiting marks, cancels.

-- name: worker_register
-- Register a live process in pgsched.workers and return its id (its liveness lock key); heartbeat_lease NULL: it holds the lock, else it has no session and lives by heartbeat age.
INSERT INTO pgsched.workers (role, host, pid, queues, concurrency, version, heartbeat_lease_seconds)
VALUES (%(role)s::text, %(host)s::text, %(pid)s::int, %(queues)s::text[], %(concurrency)s::int, %(version)s::text,
        %(heartbeat_lease)s::float8)
RETURNING id

-- name: worker_lock
-- Take this session's liveness lock on the worker id without waiting; false when another session holds it.
SELECT pg_try_advisory_lock(pgsched.lock_namespace(), %(id)s::int) AS locked

-- name: worker_heartbeat
-- Beat the heartbeat and publish the started jobs (NULL keeps them); no row back means the row was deleted and the worker must register again.
UPDATE pgsched.workers SET heartbeat_at = now(), started = coalesce(%(started)s::bigint[], started)
 WHERE id = %(id)s::bigint RETURNING id

-- name: worker_started_publish
-- Publish the jobs this worker has started (before a job runs alone: its start mark is known before it starts); false when the row is gone.
UPDATE pgsched.workers SET started = %(started)s::bigint[] WHERE id = %(worker_id)s::bigint RETURNING true AS published

-- name: worker_unregister
-- Remove a worker's row on clean shutdown; its waiting marks go with it.
DELETE FROM pgsched.workers WHERE id = %(id)s::bigint

-- name: worker_wait_mark
-- Mark a worker as waiting on its queues, so the insert trigger sends NOTIFY for them.
INSERT INTO pgsched.waiting_workers (queue, worker_id)
SELECT q.name, %(worker_id)s::bigint FROM unnest(%(queues)s::text[]) AS q(name)
ON CONFLICT DO NOTHING

-- name: worker_wait_clear
-- The worker has a backlog again: stop asking for NOTIFY on its queues.
DELETE FROM pgsched.waiting_workers WHERE worker_id = %(worker_id)s::bigint

-- name: listener_ping
-- Prove the LISTEN connection is alive between notifications.
SELECT 1 AS ok

-- name: job_claim_batch
-- Claim up to n due jobs for one registered worker under one new lease: plain queues through the claim index in one statement (pgsched.claim_candidates: in index order whatever the statistics), limited queues and keyed jobs through pgsched.claim_limited (called only when one is due).
-- Paused queues are skipped. When plain queues are served too, limited work gets at most half of a claim, so neither side starves the other.
-- A worker whose row is gone claims nothing (it must register again). The claim also publishes the worker's started jobs:
-- those still running (the running parameter) and the first "free" claimed rows, which fill free slots at once (started = true).
WITH alive AS MATERIALIZED (
    SELECT w.id FROM pgsched.workers w WHERE w.id = %(worker_id)s::bigint
),
settings AS MATERIALIZED (
    SELECT q.name, coalesce(s.paused, false) AS paused,
           coalesce(s.concurrency IS NOT NULL OR s.rate_limit IS NOT NULL, false) AS limited
      FROM unnest(%(queues)s::text[]) AS q(name)
      LEFT JOIN pgsched.queues s ON s.name = q.name
     WHERE EXISTS (SELECT 1 FROM alive)
),
limited AS MATERIALIZED (
    SELECT c.id, c.queue, c.task, c.args, c.attempt, c.timeout_seconds, c.waited_seconds, c.limited, c.lease, c.isolate
      FROM (SELECT 1 AS go
             WHERE EXISTS (SELECT 1 FROM settings st WHERE st.limited AND NOT st.paused)
                OR EXISTS (SELECT 1 FROM settings st  -- one probe of the keyed index per queue (migration 0055)
                            WHERE NOT st.paused AND pgsched.keyed_queued(st.name))) gate
     CROSS JOIN LATERAL pgsched.claim_limited(
            %(queues)s::text[],
            CASE WHEN EXISTS (SELECT 1 FROM settings st WHERE NOT st.limited AND NOT st.paused)
                 THEN (%(limit)s::int + 1) / 2 ELSE %(limit)s::int END,
            %(worker_id)s::bigint, coalesce(%(now)s::timestamptz, now())) c
),
claimed AS MATERIALIZED (
    SELECT c.id, c.row_tid
      FROM settings q
     CROSS JOIN LATERAL pgsched.claim_candidates(q.name, coalesce(%(now)s::timestamptz, now()), %(limit)s::int) c
     WHERE NOT q.limited AND NOT q.paused
     ORDER BY c.priority DESC, c.run_at, c.id
     LIMIT greatest(0, %(limit)s::int - (SELECT count(*) FROM limited))
),
lease AS MATERIALIZED (
    SELECT pgsched.new_lease() AS token WHERE EXISTS (SELECT 1 FROM claimed)
),
plain_all AS MATERIALIZED (
    -- A claimed job never started and past its deadline to start (expires_at) ends as expired in the same write instead.
    UPDATE pgsched.jobs j
       SET state = CASE WHEN j.expires_at <= coalesce(%(now)s::timestamptz, now()) AND j.started_at IS NULL THEN 'cancelled'
                        ELSE 'running' END::pgsched.job_state,
           attempt = CASE WHEN j.expires_at <= coalesce(%(now)s::timestamptz, now()) AND j.started_at IS NULL THEN j.attempt
                          ELSE j.attempt + 1 END,
           worker_id = CASE WHEN j.expires_at <= coalesce(%(now)s::timestamptz, now()) AND j.started_at IS NULL THEN NULL
                            ELSE %(worker_id)s::bigint END,
           started_at = CASE WHEN j.expires_at <= coalesce(%(now)s::timestamptz, now()) AND j.started_at IS NULL THEN NULL
                             ELSE coalesce(%(now)s::timestamptz, now()) END,
           finished_at = CASE WHEN j.expires_at <= coalesce(%(now)s::timestamptz, now()) AND j.started_at IS NULL
                              THEN coalesce(%(now)s::timestamptz, now()) END,
           errors = CASE WHEN j.expires_at <= coalesce(%(now)s::timestamptz, now()) AND j.started_at IS NULL
                         THEN j.errors || pgsched.expired_entry(j.expires_at, coalesce(%(now)s::timestamptz, now()))
                         ELSE j.errors END,
           lease = CASE WHEN j.expires_at <= coalesce(%(now)s::timestamptz, now()) AND j.started_at IS NULL THEN NULL
                        ELSE (SELECT lease.token FROM lease) END
     -- Locked above in jobs_queued (the state prunes to it): read by tuple id, one heap tuple per job (migration 0051).
     WHERE j.ctid = ANY (ARRAY(SELECT claimed.row_tid FROM claimed)) AND j.state IN ('waiting', 'queued')
    RETURNING j.id, j.queue, j.task, j.args, j.attempt,
              -- date_part: float8 at once (extract's numeric reaches float8 through its text form, 0.2 µs a value)
              date_part('epoch', j.timeout) AS timeout_seconds,
              date_part('epoch', j.started_at - j.run_at) AS waited_seconds,
              false AS limited, j.lease, j.alone AS isolate, j.state
),
plain AS MATERIALIZED (
    SELECT p.id, p.queue, p.task, p.args, p.attempt, p.timeout_seconds, p.waited_seconds, p.limited, p.lease, p.isolate
      FROM plain_all p WHERE p.state = 'running'
),
taken AS MATERIALIZED (
    SELECT * FROM plain
    UNION ALL
    SELECT * FROM limited
),
published AS (
    -- Jobs that must run alone (isolate) are never marked here: they publish their own start. A claim that takes
    -- nothing and finds the list as it is writes nothing: no transaction id, so no WAL flush at its commit.
    UPDATE pgsched.workers w
       SET started = %(running)s::bigint[]
                     || ARRAY(SELECT t.id FROM taken t WHERE NOT t.isolate ORDER BY t.id LIMIT greatest(0, %(free)s::int))
     WHERE w.id = %(worker_id)s::bigint
       AND (EXISTS (SELECT 1 FROM taken) OR w.started IS DISTINCT FROM %(running)s::bigint[])
    RETURNING w.started
)
SELECT t.*, t.id = ANY (p.started) AS started FROM taken t, published p

-- name: job_finish_many
-- Record finished attempts in one statement: succeeded (with result), failed (retry after delay, or dead), snoozed (queued again after delay with its attempt given back; dead past the snooze limit) or cancelled; fenced on (id, lease), which also clears the lease; NOTIFY pgsched_done for ended jobs a result waiter waits on.
-- The statement is pgsched.job_finish_many (migration 0037; sql/schema.sql shows it). Plan-proof: "j.id = ANY(ids)" bounds
-- every way of reading jobs to the batch; "state NOT IN (the final states)" prunes it to jobs_queued and jobs_running and implies none of
-- the partial indexes on one state (so only the primary key finds a row); and the function may not plan a nested loop,
-- so the batch is joined by hash whatever the statistics (reltuples 0 after a drain made the kept plan rescan the batch
-- once per job). tests/worker/test_plans.py counts the rows visited in every statistics state, and checks that no
-- partition of finished jobs is read.
SELECT f.job_id AS id, f.job_state AS state
  FROM pgsched.job_finish_many(%(now)s::timestamptz, %(ids)b::bigint[], %(leases)b::bigint[], %(outcomes)b::text[],
                               %(results)b::text[], %(errors)b::text[], %(delays)b::float8[], %(finals)b::bool[],
                               %(snooze_limits)b::int[]) f

-- name: job_progress_many
-- Write the progress and heartbeat reports of running attempts (id, lease), one statement per flush of the worker's progress writer (at most one a second): a fraction NULL keeps the progress, an extension NULL keeps the lease promise; fenced on the lease, so a report of an attempt the reaper took back or that ended is dropped (its id is not returned).
-- pgsched.job_progress_many (0037), plan-proof as job_finish_many: only the primary key finds the rows, joined by hash.
SELECT f.job_id AS id
  FROM pgsched.job_progress_many(%(now)s::timestamptz, %(ids)s::bigint[], %(leases)s::bigint[], %(fractions)s::float8[],
                                 %(messages)s::text[], %(extends)s::float8[]) f

-- name: job_next_due_in
-- Seconds until the earliest queued job of these queues that is not due yet, or until a rate-limited queue with due jobs earns a token (NULL when neither).
SELECT least(
         (SELECT extract(epoch FROM min(j.run_at) - coalesce(%(now)s::timestamptz, now()))::float8
            FROM pgsched.jobs j
           WHERE j.state = 'queued' AND j.concurrency_key IS NULL
             AND j.queue = ANY(%(queues)s::text[])
             AND j.run_at > coalesce(%(now)s::timestamptz, now())),
         (SELECT extract(epoch FROM min(j.run_at) - coalesce(%(now)s::timestamptz, now()))::float8
            FROM pgsched.jobs j
           WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL
             AND j.queue = ANY(%(queues)s::text[])
             AND j.run_at > coalesce(%(now)s::timestamptz, now())),
         pgsched.rate_wait(%(queues)s::text[], coalesce(%(now)s::timestamptz, now()))
       ) AS seconds

-- name: job_cancel_requested
-- Which of these running attempts (id, lease) have a pending cancel request (the safety net for a missed NOTIFY pgsched_cancel).
-- Driven by the ids (one primary-key probe each), never by the running set: see job_finish_many.
SELECT j.id FROM unnest(%(ids)s::bigint[], %(leases)s::bigint[]) AS r(id, lease)
  JOIN pgsched.jobs j ON j.id = r.id AND j.lease = r.lease
 WHERE j.id = ANY (%(ids)s::bigint[]) AND j.cancel_requested_at IS NOT NULL AND j.state NOT IN ('succeeded', 'dead', 'cancelled')

-- name: job_release_leased
-- Hand claimed attempts (id, lease) back uncharged, in their old place (run_at kept): unstarted prefetched jobs, graceful shutdown.
-- With a delay, run_at moves on by that many seconds instead: jobs of a task this worker does not serve, so it does not claim them again at once.
-- pgsched.job_release_leased (0037), plan-proof as job_finish_many.
SELECT f.job_id AS id FROM pgsched.job_release_leased(%(ids)s::bigint[], %(leases)s::bigint[], %(delay)s::float8) f

-- name: job_reconcile
-- Hand back uncharged, at once, every running row under this worker id that it does not hold (a claim whose rows it never got, a completion a crash lost); reads only this worker's running rows.
-- pgsched.job_reconcile (0043): a plain index scan of jobs_running_idx, which marks the entries of jobs that left dead.
SELECT r.job_id AS id FROM pgsched.job_reconcile(%(worker_id)s::bigint, %(ids)s::bigint[], %(leases)s::bigint[]) r

-- name: wal_positions
-- Where the WAL is inserted and flushed up to (bytes): a completion committed before "inserted" is durable once "flushed" passes it.
SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint AS inserted,
       pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint AS flushed

-- name: worker_session_setup
-- The worker's own connections: commit without waiting for the WAL flush (a database crash can only make a job run again), and keep one generic plan per prepared statement (planning the claim costs more than running it).
-- A generic plan outlives the statistics it was made from: planned while pgsched.jobs was empty (and analyzed), a sequential scan looks free and stays the plan under a million-row backlog. Every statement of these sessions reaches jobs by a key, so sequential scans are ruled out.
-- No JIT: these statements are short, and one with no way but a sequential scan (a small table) carries the 1e10 cost of a disabled node, far past jit_above_cost: compiled at every call.
SELECT set_config('synchronous_commit', 'off', false) AS synchronous_commit,
       set_config('plan_cache_mode', 'force_generic_plan', false) AS plan_cache_mode,
       set_config('enable_seqscan', 'off', false) AS enable_seqscan,
       set_config('jit', 'off', false) AS jit

-- name: job_trace_list
-- The OpenTelemetry trace context (meta -> 'trace') of just-claimed jobs that carry one (primary-key reads); run only while tracing is on.
SELECT id, meta -> 'trace' AS trace FROM pgsched.jobs WHERE id = ANY(%(ids)s::bigint[]) AND state NOT IN ('succeeded', 'dead', 'cancelled') AND meta ? 'trace'
