-- Queries of workflows: create one whole (steps and edges in one statement), read, cancel, prune.

-- name: workflow_begin
-- Create a workflow and reserve ids for its n steps (the COPY of the steps carries them); also the database's now.
WITH wf AS (
    INSERT INTO pgsched.workflows (name, kind) VALUES (%(name)s::text, %(kind)s::text) RETURNING id
)
SELECT wf.id, now() AS now,
       (SELECT array_agg(nextval((SELECT pg_get_serial_sequence('pgsched.jobs', 'id')::regclass)))
          FROM generate_series(1, %(n)s::int)) AS ids  -- the sequence looked up once, as in job_ids_reserve
  FROM wf

-- name: workflow_steps_copy
-- Bulk insert of a workflow's steps through COPY (binary): waiting with deps_left when they have dependencies, else queued.
COPY pgsched.jobs (id, task, args, queue, priority, run_at, max_attempts, timeout, concurrency_key, concurrency_limit,
                   tags, meta, expires_at, state, workflow_id, has_dependents, deps_left)
FROM STDIN (FORMAT BINARY)

-- name: workflow_edges_copy
-- Bulk insert of a workflow's edges through COPY (binary).
COPY pgsched.job_dependencies (job_id, depends_on, position, on_failure, results_arg) FROM STDIN (FORMAT BINARY)

-- name: workflow_get
-- One workflow with its progress (steps per state) and overall state.
SELECT id, name, kind, created_at, steps, waiting, queued, running, succeeded, dead, cancelled, state, finished_at
  FROM pgsched.workflow_status WHERE id = %(id)s::bigint

-- name: workflow_steps_get
-- The steps of one workflow in creation order (which is a topological order), at most limit of them.
SELECT s.id, s.task, s.queue, s.priority, s.state::text AS state, s.attempt, s.max_attempts, s.depends_on,
       s.created_at, s.started_at, s.finished_at, extract(epoch FROM s.duration)::float8 AS duration_seconds,
       s.last_error, s.result
  FROM pgsched.workflow_steps s
 WHERE s.workflow_id = %(id)s::bigint
 ORDER BY s.id
 LIMIT %(limit)s::int

-- name: workflow_list
-- A page of workflows, newest first, optionally of one overall state; keyset cursor on id.
SELECT id, name, kind, created_at, steps, waiting, queued, running, succeeded, dead, cancelled, state, finished_at
  FROM pgsched.workflow_status
 WHERE id < coalesce(%(before_id)s::bigint, 9223372036854775807)
   AND (%(state)s::text IS NULL OR state = %(state)s::text)
 ORDER BY id DESC
 LIMIT %(limit)s::int

-- name: workflow_cancel
-- Cancel every unfinished step of a workflow (running ones are signalled); returns how many.
SELECT pgsched.workflow_cancel(%(id)s::bigint) AS cancelled

-- name: workflow_prune
-- Of the next limit workflows after id "after" (a sweep the leader keeps going round by round), delete those that no longer have any step (retention removed them all) and were created more than an hour ago (SQL callers add steps after creating one); returns how many went and the last id looked at (NULL: the sweep is through, start again).
WITH batch AS MATERIALIZED (
    SELECT w.id FROM pgsched.workflows w
     WHERE w.id > %(after)s::bigint
     ORDER BY w.id
     LIMIT %(limit)s::int
), doomed AS (
    SELECT w.id FROM pgsched.workflows w JOIN batch b ON b.id = w.id
     WHERE w.created_at < coalesce(%(now)s::timestamptz, now()) - interval '1 hour'
       AND NOT EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.workflow_id = w.id)
       FOR UPDATE OF w SKIP LOCKED
), gone AS (
    DELETE FROM pgsched.workflows w USING doomed WHERE w.id = doomed.id RETURNING 1
)
SELECT (SELECT count(*) FROM gone)::int AS deleted,
       (SELECT max(b.id) FROM batch b) AS last_id

-- name: workflow_add
-- Enqueue one job that waits for existing jobs (pgsched.workflow_add; NULL workflow: a new one of kind after); returns its id.
SELECT pgsched.workflow_add(%(workflow_id)s::bigint, %(task)s::text, %(args)s::jsonb, %(depends_on)s::bigint[],
                            on_failure => %(on_failure)s::text, queue => %(queue)s::text, priority => %(priority)s::int,
                            max_attempts => %(max_attempts)s::int, timeout => %(timeout)s::interval,
                            results_arg => %(results_arg)s::text) AS id
