-- The task registry: what workers publish, and what the enqueue paths read from it.

-- name: task_publish
-- Publish the tasks a worker serves, once per worker id (right after it registers; rows go with the worker's row).
INSERT INTO pgsched.tasks (name, worker_id, queue, priority, max_attempts, timeout, retry, description)
SELECT p.name, %(worker_id)s::bigint, p.queue, p.priority, p.max_attempts, p.timeout, p.retry, p.description
  FROM unnest(%(names)s::text[], %(queues)s::text[], %(priorities)s::smallint[], %(max_attempts)s::int[],
              %(timeouts)s::interval[], %(retries)s::text[], %(descriptions)s::text[])
       AS p(name, queue, priority, max_attempts, timeout, retry, description)
ON CONFLICT (name, worker_id) DO NOTHING

-- name: task_names_known
-- Which of these task names some live worker serves.
SELECT DISTINCT t.name FROM pgsched.tasks t WHERE t.name = ANY(%(names)s::text[])

-- name: task_names_all
-- Every task name some live worker serves (for close-name suggestions).
SELECT DISTINCT t.name FROM pgsched.tasks t ORDER BY t.name LIMIT 10000

-- name: task_defaults_many
-- The defaults (pgsched.task_defaults) of these task names, so a bulk insert can carry them and skip the trigger.
SELECT n.name, d.queue, d.priority, d.max_attempts
  FROM unnest(%(names)s::text[]) AS n(name), pgsched.task_defaults(n.name) AS d
