-- name: schedule_upsert
-- Create a schedule or replace its definition by name; next_fire_at is computed by the caller.
INSERT INTO pgsched.schedules AS s
       (name, cron, timezone, task, args, queue, priority, max_attempts, enabled, misfire_policy, misfire_grace, next_fire_at)
VALUES (%(name)s::text, %(cron)s::text, %(timezone)s::text, %(task)s::text, %(args)s::jsonb, %(queue)s::text,
        %(priority)s::smallint, %(max_attempts)s::int, %(enabled)s::bool, %(misfire_policy)s::text,
        make_interval(secs => %(misfire_grace)s::float8), %(next_fire_at)s::timestamptz)
ON CONFLICT (name) DO UPDATE
   SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, task = EXCLUDED.task, args = EXCLUDED.args,
       queue = EXCLUDED.queue, priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
       enabled = EXCLUDED.enabled, misfire_policy = EXCLUDED.misfire_policy, misfire_grace = EXCLUDED.misfire_grace,
       -- never back to an instant already fired (a caller's clock may lag): NULL lets the leader compute it
       next_fire_at = CASE WHEN s.last_fired_at IS NOT NULL AND EXCLUDED.next_fire_at <= s.last_fired_at THEN NULL
                           ELSE EXCLUDED.next_fire_at END,
       last_error = NULL
RETURNING s.*, (xmax = 0) AS created

-- name: schedule_get
-- One schedule by name.
SELECT * FROM pgsched.schedules WHERE name = %(name)s::text

-- name: schedule_list
-- Schedules by name, keyset-paged.
SELECT * FROM pgsched.schedules
 WHERE (%(after)s::text IS NULL OR name > %(after)s::text)
 ORDER BY name
 LIMIT %(limit)s::int

-- name: schedule_set_enabled
-- Pause or resume; resuming recomputes the next instant (set by the caller) so missed ticks are not fired.
UPDATE pgsched.schedules
   SET enabled = %(enabled)s::bool,
       next_fire_at = CASE WHEN NOT %(enabled)s::bool THEN next_fire_at
                           WHEN last_fired_at IS NOT NULL AND %(next_fire_at)s::timestamptz <= last_fired_at THEN NULL
                           ELSE %(next_fire_at)s::timestamptz END
 WHERE name = %(name)s::text
RETURNING *

-- name: schedule_next_fill
-- Set the next instant of a schedule left without one (its last fire was past the caller's "now"); never one already fired.
UPDATE pgsched.schedules
   SET next_fire_at = %(next_fire_at)s::timestamptz
 WHERE name = %(name)s::text
   AND enabled
   AND next_fire_at IS NULL
   AND (last_fired_at IS NULL OR %(next_fire_at)s::timestamptz > last_fired_at)
RETURNING *

-- name: schedule_delete
-- Remove a schedule; its past jobs stay.
DELETE FROM pgsched.schedules WHERE name = %(name)s::text RETURNING id

-- name: schedule_trigger
-- Fire a schedule now, outside its cron instants: a job with its own manual run key.
INSERT INTO pgsched.jobs (task, args, queue, priority, max_attempts, run_at, run_key, schedule_id, schedule_name)
SELECT s.task, s.args, s.queue, s.priority, s.max_attempts, coalesce(%(now)s::timestamptz, now()),
       'manual:' || s.id || ':' || %(token)s::text, s.id, s.name
  FROM pgsched.schedules s
 WHERE s.name = %(name)s::text
RETURNING *

-- name: schedule_runs
-- Execution history of one schedule: its jobs, newest first, keyset-paged by id.
SELECT j.* FROM pgsched.jobs j
  JOIN pgsched.schedules s ON s.id = j.schedule_id
 WHERE s.name = %(name)s::text
   AND j.id < coalesce(%(before_id)s::bigint, 9223372036854775807)
 ORDER BY j.id DESC
 LIMIT %(limit)s::int

-- name: schedule_lock_due
-- Leader: lock the enabled schedules that are due (or have no next instant yet), skipping rows others hold.
SELECT s.*, coalesce(%(now)s::timestamptz, clock_timestamp()) AS now
  FROM pgsched.schedules s
 WHERE s.enabled
   AND ((s.next_fire_at IS NULL AND s.last_error IS NULL)
        OR s.next_fire_at <= coalesce(%(now)s::timestamptz, clock_timestamp()))
 ORDER BY s.next_fire_at NULLS FIRST
 LIMIT %(limit)s::int
   FOR UPDATE SKIP LOCKED

-- name: schedule_fire_jobs
-- Leader: insert one job per fire instant of the schedules locked by schedule_lock_due, all in one statement (pairs
-- of parallel arrays: schedule_ids[i] fires at instants[i]); run_key cron:<schedule id>:<UTC instant> (scope retention:
-- held while the job's row exists) makes a second insert a no-op: the key is taken first, and only a job that took it
-- goes in. Returns each inserted job's id, instant and schedule.
WITH fire AS MATERIALIZED (
    SELECT nextval((SELECT pg_get_serial_sequence('pgsched.jobs', 'id')::regclass)) AS id, s.task, s.args, s.queue,
           s.priority, s.max_attempts, i.instant, s.id AS schedule_id, s.name AS schedule_name,
           'cron:' || s.id || ':' || to_char(i.instant AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS run_key,
           i.n
      FROM unnest(%(schedule_ids)s::bigint[], %(instants)s::timestamptz[]) WITH ORDINALITY AS i(schedule_id, instant, n)
      JOIN pgsched.schedules s ON s.id = i.schedule_id
), taken AS MATERIALIZED (
    SELECT k.job_id FROM pgsched.run_keys_take(ARRAY(SELECT f.run_key FROM fire f ORDER BY f.n),
                                               ARRAY(SELECT f.id FROM fire f ORDER BY f.n),
                                               '{}', '{}', '{}', '{}', '{}', '{}', NULL) AS k
     WHERE k.holder IS NULL
)
INSERT INTO pgsched.jobs (id, task, args, queue, priority, max_attempts, run_at, run_key, run_key_scope,
                          schedule_id, schedule_name)
SELECT f.id, f.task, f.args, f.queue, f.priority, f.max_attempts, f.instant, f.run_key, 'retention',
       f.schedule_id, f.schedule_name
  FROM fire f
 WHERE f.id IN (SELECT taken.job_id FROM taken)
RETURNING id, run_at, schedule_id

-- name: schedule_advance
-- Leader: move each schedule's next_fire_at forward (never back) and record the last instant it fired (NULL: none
-- this time), for all the schedules of one firing pass at once (parallel arrays).
UPDATE pgsched.schedules s
   SET next_fire_at = greatest(coalesce(s.next_fire_at, a.next_fire_at), a.next_fire_at),
       last_fired_at = CASE WHEN a.fired_at IS NULL THEN s.last_fired_at
                            ELSE greatest(coalesce(s.last_fired_at, a.fired_at), a.fired_at) END,
       last_error = NULL
  FROM unnest(%(schedule_ids)s::bigint[], %(next_fire_ats)s::timestamptz[], %(fired_ats)s::timestamptz[])
       AS a(schedule_id, next_fire_at, fired_at)
 WHERE s.id = a.schedule_id

-- name: schedule_set_error
-- Leader: record why a schedule's next instant cannot be computed (it stays idle until its cron changes).
UPDATE pgsched.schedules SET last_error = %(error)s::text, next_fire_at = NULL WHERE id = %(schedule_id)s::bigint

-- name: schedule_next_wakeup
-- Leader: seconds until the earliest next instant of an enabled schedule (NULL when none), and whether any needs computing.
SELECT extract(epoch FROM min(next_fire_at) - clock_timestamp())::float8 AS seconds,
       bool_or(next_fire_at IS NULL AND last_error IS NULL) AS uncomputed
  FROM pgsched.schedules
 WHERE enabled
