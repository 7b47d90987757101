-- Queries of workflows: create one whole (steps and edges in one statement), read, cancel, prune.

-- name: workflow_insert
-- Create a workflow, its steps (waiting when they have dependencies, else queued) and its edges in one statement; the ids come from job_ids_reserve. Marks every step that others wait for (has_dependents).
WITH wf AS (
    INSERT INTO pgsched.workflows (name, kind) VALUES (%(name)s::text, %(kind)s::text) RETURNING id
), steps AS (
    INSERT INTO pgsched.jobs (id, task, args, queue, priority, run_at, max_attempts, timeout, concurrency_key,
                              concurrency_limit, state, workflow_id, has_dependents)
    SELECT t.id, t.task, t.args, t.queue, t.priority, coalesce(t.run_at, now()), t.max_attempts, t.timeout,
           t.concurrency_key, t.concurrency_limit,
           CASE WHEN t.waits THEN 'waiting' ELSE 'queued' END::pgsched.job_state, (SELECT wf.id FROM wf), t.has_dependents
      FROM unnest(%(ids)s::bigint[], %(tasks)s::text[], %(args)s::jsonb[], %(queues)s::text[], %(priorities)s::smallint[],
                  %(run_ats)s::timestamptz[], %(max_attempts)s::int[], %(timeouts)s::interval[],
                  %(concurrency_keys)s::text[], %(concurrency_limits)s::int[], %(waits)s::bool[], %(has_dependents)s::bool[])
           AS t(id, task, args, queue, priority, run_at, max_attempts, timeout, concurrency_key, concurrency_limit,
                waits, has_dependents)
    RETURNING 1
), edges AS (
    INSERT INTO pgsched.job_dependencies (job_id, depends_on, position, on_failure, results_arg)
    SELECT e.job_id, e.depends_on, e.position, e.on_failure, e.results_arg
      FROM unnest(%(edge_jobs)s::bigint[], %(edge_deps)s::bigint[], %(edge_positions)s::int[],
                  %(edge_policies)s::text[], %(edge_results_args)s::text[])
           AS e(job_id, depends_on, position, on_failure, results_arg)
    RETURNING 1
)
SELECT (SELECT wf.id FROM wf) AS id, (SELECT count(*) FROM steps)::int AS steps, (SELECT count(*) FROM edges)::int AS edges

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
 WHERE (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
   AND (%(state)s::text IS NULL OR state = %(state)s::text)
 ORDER BY id DESC
 LIMIT %(limit)s::int

-- name: workflow_cancel
-- Cancel every unfinished step of a workflow (running ones are signalled); returns how many.
SELECT pgsched.workflow_cancel(%(id)s::bigint) AS cancelled

-- name: workflow_prune
-- Delete up to n workflows that no longer have any step (retention removed them all), created more than an hour ago (SQL callers add steps after creating one).
WITH doomed AS (
    SELECT w.id FROM pgsched.workflows w
     WHERE w.created_at < coalesce(%(now)s::timestamptz, now()) - interval '1 hour'
       AND NOT EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.workflow_id = w.id)
     ORDER BY w.id
     LIMIT %(limit)s::int
       FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM pgsched.workflows w USING doomed WHERE w.id = doomed.id RETURNING 1
)
SELECT count(*)::int AS deleted FROM gone
