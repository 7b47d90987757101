-- name: job_insert
-- Insert one job without a run key (with one: job_insert_keyed). Queue, priority and max_attempts left NULL are
-- resolved here, by the rule of pgsched.task_defaults inlined (newest publication in pgsched.tasks, else 'default', 0
-- and 5), so the jobs_fill_defaults trigger (a plpgsql call per row) does not fire: the same values, one probe of
-- tasks_pkey, and only when an option is missing.
INSERT INTO pgsched.jobs (task, args, queue, priority, run_at, max_attempts, timeout, concurrency_key, concurrency_limit,
                          tags, meta, expires_at)
SELECT %(task)s::text, %(args)s::jsonb, coalesce(%(queue)s::text, d.queue, 'default'),
       coalesce(%(priority)s::smallint, d.priority, 0), coalesce(%(run_at)s::timestamptz, %(now)s::timestamptz, now()),
       coalesce(%(max_attempts)s::int, d.max_attempts, 5), %(timeout)s::interval, %(concurrency_key)s::text,
       %(concurrency_limit)s::int, %(tags)s::text[], %(meta)s::jsonb, %(expires_at)s::timestamptz
  FROM (SELECT) AS one
  LEFT JOIN LATERAL (
      SELECT t.queue, t.priority, t.max_attempts
        FROM pgsched.tasks t
       WHERE t.name = %(task)s::text
         AND (%(queue)s::text IS NULL OR %(priority)s::smallint IS NULL OR %(max_attempts)s::int IS NULL)
       ORDER BY t.published_at DESC, t.worker_id DESC
       LIMIT 1) AS d ON true
RETURNING *, NULL::bigint AS holder

-- name: job_insert_keyed
-- Insert one job with a run key; when another job holds the key (over that job's scope), insert nothing and return the holder.
-- A key held in this statement's snapshot (the rule of pgsched.run_key_stale, inlined: that function is not inlinable and
-- costs a plan per call) is answered at once: no lock, no transaction id, no commit flush, and the answer was true
-- at the snapshot. Otherwise the key is taken first (pgsched.run_keys_take, which also applies
-- on_conflict replace) and the insert trigger then finds it held. The holder's row comes back when this statement
-- sees it (else holder alone: read it in a statement of its own).
WITH held AS MATERIALIZED (
    SELECT k.job_id AS holder
      FROM pgsched.run_keys k LEFT JOIN pgsched.jobs j ON j.id = k.job_id
     WHERE %(run_key)s::text IS NOT NULL AND %(on_conflict)s::text = 'existing' AND k.run_key = %(run_key)s::text
       AND CASE k.scope WHEN 'period' THEN k.held_until > coalesce(%(now)s::timestamptz, now())
                        WHEN 'active' THEN coalesce(j.state IN ('waiting', 'queued', 'running'), false)
                        ELSE j.id IS NOT NULL END  -- NOT pgsched.run_key_stale(...), inlined: one snapshot suffices here
), new AS MATERIALIZED (
    SELECT nextval((SELECT pg_get_serial_sequence('pgsched.jobs', 'id')::regclass)) AS id
     WHERE NOT EXISTS (SELECT 1 FROM held)
), taken AS MATERIALIZED (
    SELECT k.holder
      FROM new, pgsched.run_keys_take(ARRAY[%(run_key)s::text], ARRAY[new.id], ARRAY[%(run_key_scope)s::text],
                                      ARRAY[%(run_key_period)s::interval], ARRAY[%(on_conflict)s::text],
                                      ARRAY[%(args)s::jsonb], ARRAY[%(run_at)s::timestamptz], ARRAY[%(priority)s::int],
                                      %(now)s::timestamptz) AS k
     WHERE %(run_key)s::text IS NOT NULL
     UNION ALL
    SELECT held.holder FROM held
), ins AS (
    INSERT INTO pgsched.jobs (id, task, args, queue, priority, run_at, run_key, max_attempts, timeout,
                              concurrency_key, concurrency_limit, tags, meta, expires_at, run_key_scope, run_key_period)
    SELECT new.id, %(task)s::text, %(args)s::jsonb, %(queue)s::text, %(priority)s::smallint,
           coalesce(%(run_at)s::timestamptz, %(now)s::timestamptz, now()), %(run_key)s::text,
           %(max_attempts)s::int, %(timeout)s::interval, %(concurrency_key)s::text, %(concurrency_limit)s::int,
           %(tags)s::text[], %(meta)s::jsonb, %(expires_at)s::timestamptz, %(run_key_scope)s::text,
           %(run_key_period)s::interval
      FROM new
     WHERE NOT EXISTS (SELECT 1 FROM taken WHERE taken.holder IS NOT NULL)
    RETURNING *
)
SELECT ins.*, NULL::bigint AS holder FROM ins
UNION ALL
SELECT h.*, h.id AS holder FROM pgsched.jobs h, held WHERE h.id = held.holder
UNION ALL
SELECT (NULL::pgsched.jobs).*, taken.holder FROM taken
 WHERE taken.holder IS NOT NULL AND NOT EXISTS (SELECT 1 FROM held)

-- name: job_ids_reserve
-- Reserve n job ids from the identity sequence, so a COPY can carry them (one array: cheap to decode), and in the same
-- round trip the defaults (pgsched.task_defaults) of the task names given, so the bulk insert carries them and the
-- jobs_fill_defaults trigger never fires for it (NULL arrays when no name is given).
-- The sequence is looked up once (an InitPlan): pg_get_serial_sequence() per id cost more than the COPY's own rows.
-- apart: this statement is a transaction of its own (an autocommit connection), and a later one stores the jobs. Its
-- commit then does not wait for WAL to reach disk (synchronous_commit off, for this transaction alone): nextval gives
-- it an xid, so its commit would flush WAL, a second flush (and fsync) in every bulk enqueue. The later statement's
-- commit flushes WAL past this one's, so an id it stores can never be handed out again after a crash. In a caller's
-- transaction (apart false) the caller's commit is left as it is.
SELECT r.ids, d.names, d.queues, d.priorities, d.max_attempts,
       CASE WHEN %(apart)s::boolean THEN set_config('synchronous_commit', 'off', true) END AS commit_mode
  FROM (SELECT array_agg(nextval((SELECT pg_get_serial_sequence('pgsched.jobs', 'id')::regclass))) AS ids
          FROM generate_series(1, %(n)s::int)) AS r,
       (SELECT array_agg(n.name) AS names, array_agg(t.queue) AS queues, array_agg(t.priority) AS priorities,
               array_agg(t.max_attempts) AS max_attempts
          FROM unnest(%(names)s::text[]) AS n(name), pgsched.task_defaults(n.name) AS t) AS d

-- name: job_copy
-- Bulk insert through COPY (binary); the ids come from job_ids_reserve.
COPY pgsched.jobs (id, task, args, queue, priority, run_at, max_attempts, timeout, concurrency_key, concurrency_limit)
FROM STDIN (FORMAT BINARY)

-- name: job_copy_labelled
-- job_copy for a batch where some job has tags, meta or a deadline (the other batches do not encode three empty columns per row).
COPY pgsched.jobs (id, task, args, queue, priority, run_at, max_attempts, timeout, concurrency_key, concurrency_limit,
                   tags, meta, expires_at)
FROM STDIN (FORMAT BINARY)

-- name: job_insert_many_keyed
-- Bulk insert with reserved ids where some jobs carry run keys. Keys seen held (read without a lock, as in job_insert)
-- are answered at once; the others are taken first, in key order (pgsched.run_keys_take), and a job whose key another
-- job holds is not inserted. One row per distinct key: the id of the job holding it now.
WITH t AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tasks)s::text[], %(args)s::jsonb[], %(queues)s::text[],
                         %(priorities)s::smallint[], %(run_ats)s::timestamptz[], %(run_keys)s::text[],
                         %(max_attempts)s::int[], %(timeouts)s::interval[], %(concurrency_keys)s::text[],
                         %(concurrency_limits)s::int[], %(tags)s::jsonb[], %(metas)s::jsonb[], %(expires_ats)s::timestamptz[],
                         %(run_key_scopes)s::text[], %(run_key_periods)s::interval[], %(on_conflicts)s::text[])
           WITH ORDINALITY AS t(id, task, args, queue, priority, run_at, run_key, max_attempts, timeout, concurrency_key,
                                concurrency_limit, tags, meta, expires_at, run_key_scope, run_key_period, on_conflict, n)
), held AS MATERIALIZED (
    SELECT k.run_key, k.job_id
      FROM pgsched.run_keys k LEFT JOIN pgsched.jobs j ON j.id = k.job_id
     WHERE k.run_key IN (SELECT t.run_key FROM t WHERE t.on_conflict = 'existing')
       AND CASE k.scope WHEN 'period' THEN k.held_until > coalesce(%(now)s::timestamptz, now())
                        WHEN 'active' THEN coalesce(j.state IN ('waiting', 'queued', 'running'), false)
                        ELSE j.id IS NOT NULL END
), rest AS MATERIALIZED (
    SELECT t.* FROM t WHERE t.run_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM held WHERE held.run_key = t.run_key)
), taken AS MATERIALIZED (
    SELECT * FROM pgsched.run_keys_take(
        ARRAY(SELECT r.run_key FROM rest r ORDER BY r.n), ARRAY(SELECT r.id FROM rest r ORDER BY r.n),
        ARRAY(SELECT r.run_key_scope FROM rest r ORDER BY r.n), ARRAY(SELECT r.run_key_period FROM rest r ORDER BY r.n),
        ARRAY(SELECT r.on_conflict FROM rest r ORDER BY r.n), ARRAY(SELECT r.args FROM rest r ORDER BY r.n),
        ARRAY(SELECT r.run_at FROM rest r ORDER BY r.n), ARRAY(SELECT r.priority::int FROM rest r ORDER BY r.n),
        %(now)s::timestamptz)
), ins AS (
    INSERT INTO pgsched.jobs (id, task, args, queue, priority, run_at, run_key, max_attempts, timeout,
                              concurrency_key, concurrency_limit, tags, meta, expires_at, run_key_scope, run_key_period)
    SELECT t.id, t.task, t.args, t.queue, t.priority, coalesce(t.run_at, %(now)s::timestamptz, now()), t.run_key,
           t.max_attempts, t.timeout, t.concurrency_key, t.concurrency_limit, ARRAY(SELECT jsonb_array_elements_text(t.tags)),
           t.meta, t.expires_at, t.run_key_scope, t.run_key_period
      FROM t
     WHERE t.run_key IS NULL OR EXISTS (SELECT 1 FROM taken k WHERE k.job_id = t.id AND k.holder IS NULL)
    RETURNING 1
)
SELECT k.run_key, coalesce(k.holder, k.job_id) AS id FROM taken k
UNION ALL
SELECT held.run_key, held.job_id FROM held

-- name: run_key_holders
-- The jobs still holding these run keys over their scope (a dedupe cache's hints are checked against this; the rule of
-- pgsched.run_key_stale, inlined as in job_insert).
SELECT k.run_key, k.job_id AS id
  FROM pgsched.run_keys k LEFT JOIN pgsched.jobs j ON j.id = k.job_id
 WHERE k.run_key = ANY(%(run_keys)s::text[])
   AND CASE k.scope WHEN 'period' THEN k.held_until > coalesce(%(now)s::timestamptz, now())
                    WHEN 'active' THEN coalesce(j.state IN ('waiting', 'queued', 'running'), false)
                    ELSE j.id IS NOT NULL END

-- name: dedupe_scope_get
-- This database's scope in a shared dedupe cache: the cluster's system identifier and the database name.
SELECT system_identifier::text || ':' || current_database() AS scope FROM pg_control_system()

-- name: job_get
-- One job by id (pgsched.job_get: a plan cached per server session, not one planned over every partition per call).
SELECT * FROM pgsched.job_get(%(id)s::bigint)

-- name: job_list
-- A page of jobs, newest first, filtered; keyset cursor on id (pgsched.job_list: never a partition read whole or sorted).
SELECT * FROM pgsched.job_list(%(state)s::pgsched.job_state, %(queue)s::text, %(task)s::text, %(before_id)s::bigint,
                               %(limit)s::int)

-- name: job_list_labelled
-- As job_list, for jobs holding every tag given (jobs_tags_idx), else whose meta contains the object given (jobs_meta_idx) (pgsched.job_list_labelled: the matching ids read there, then their rows by id).
SELECT * FROM pgsched.job_list_labelled(%(tags)s::text[], %(meta)s::jsonb, %(state)s::pgsched.job_state, %(queue)s::text,
                                        %(task)s::text, %(before_id)s::bigint, %(limit)s::int)

-- name: job_cancel
-- Cancel a job through the SQL API (queued: at once; running: signal its worker).
SELECT pgsched.cancel(%(id)s::bigint)::text AS state

-- name: job_retry
-- Queue a finished or waiting job to run now through the SQL API.
SELECT pgsched.retry(%(id)s::bigint) AS id

-- name: job_delete
-- Delete a finished job; returns nothing when the job is missing or not finished.
DELETE FROM pgsched.jobs WHERE id = %(id)s::bigint AND state IN ('succeeded', 'dead', 'cancelled')
RETURNING id, run_key

-- name: queue_stats_list
-- Per-queue counts from the queue_stats view.
SELECT queue, due, scheduled, running, succeeded, dead, cancelled,
       extract(epoch FROM oldest_due_age)::float8 AS oldest_due_seconds,
       paused, concurrency_limit, rate_limit, extract(epoch FROM rate_period)::float8 AS rate_period_seconds,
       running_keys
  FROM pgsched.queue_stats ORDER BY queue

-- name: queue_configure
-- Change a queue's flow-control settings (only the set_* ones); creates its row; returns the settings.
INSERT INTO pgsched.queues AS q (name, paused, concurrency, rate_limit, rate_period, rate_burst)
VALUES (%(name)s::text, %(paused)s::boolean, %(concurrency)s::int, %(rate_limit)s::int,
        %(rate_period)s::interval, %(rate_burst)s::int)
ON CONFLICT (name) DO UPDATE SET
    paused      = CASE WHEN %(set_paused)s::boolean THEN EXCLUDED.paused ELSE q.paused END,
    concurrency = CASE WHEN %(set_concurrency)s::boolean THEN EXCLUDED.concurrency ELSE q.concurrency END,
    rate_limit  = CASE WHEN %(set_rate_limit)s::boolean THEN EXCLUDED.rate_limit ELSE q.rate_limit END,
    rate_period = CASE WHEN %(set_rate_period)s::boolean THEN EXCLUDED.rate_period ELSE q.rate_period END,
    rate_burst  = CASE WHEN %(set_rate_burst)s::boolean THEN EXCLUDED.rate_burst ELSE q.rate_burst END,
    updated_at  = now()
RETURNING q.name AS queue, q.paused, q.concurrency, q.rate_limit,
          extract(epoch FROM q.rate_period)::float8 AS rate_period_seconds, q.rate_burst
