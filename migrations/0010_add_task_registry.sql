-- 0010: tasks in the database. Workers publish the tasks they serve (pgsched.tasks, one row per
-- task and worker, gone with the worker's row); the queue, priority and max_attempts a task
-- declares fill every job inserted without them (a BEFORE INSERT trigger whose WHEN clause skips
-- rows that carry all three, so a bulk COPY that resolved them first pays nothing). Jobs gain
-- tags and meta (partial indexes: jobs without them cost nothing on claim and finish) and a
-- deadline to start (expires_at): the claim ends a job past it as cancelled with an "expired"
-- entry in errors instead of starting it, and the leader sweeps the rest.

CREATE TABLE pgsched.tasks (
    name          text NOT NULL,
    worker_id     bigint NOT NULL REFERENCES pgsched.workers (id) ON DELETE CASCADE,
    queue         text NOT NULL,
    priority      smallint NOT NULL,
    max_attempts  integer NOT NULL,
    timeout       interval,
    retry         text,
    description   text,
    published_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, worker_id),
    CONSTRAINT tasks_name_valid CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$'),
    CONSTRAINT tasks_queue_name_valid CHECK (queue ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    CONSTRAINT tasks_priority_range CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT tasks_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 1000)
);
CREATE INDEX tasks_worker_idx ON pgsched.tasks (worker_id);
COMMENT ON TABLE pgsched.tasks IS 'The task registry: one row per task and live worker that serves it, published when the worker registers; a row goes with its worker''s row in pgsched.workers (clean shutdown, or the leader''s removal of dead workers). Read pgsched.registered_tasks.';
COMMENT ON COLUMN pgsched.tasks.name IS 'Task name, as jobs.task.';
COMMENT ON COLUMN pgsched.tasks.worker_id IS 'The worker (pgsched.workers.id) that serves this task.';
COMMENT ON COLUMN pgsched.tasks.queue IS 'Queue the task declares: jobs inserted without a queue go there.';
COMMENT ON COLUMN pgsched.tasks.priority IS 'Priority the task declares: jobs inserted without a priority get it.';
COMMENT ON COLUMN pgsched.tasks.max_attempts IS 'Attempts the task declares: jobs inserted without max_attempts get it.';
COMMENT ON COLUMN pgsched.tasks.timeout IS 'Timeout of one attempt the task declares (applied by the worker to jobs without their own timeout); NULL: none.';
COMMENT ON COLUMN pgsched.tasks.retry IS 'The task''s retry policy in words (backoff base, cap, jitter).';
COMMENT ON COLUMN pgsched.tasks.description IS 'First line of the task function''s docstring.';
COMMENT ON COLUMN pgsched.tasks.published_at IS 'When the worker published this row; when workers disagree, the newest row gives the defaults.';

CREATE VIEW pgsched.registered_tasks AS
SELECT DISTINCT ON (t.name)
       t.name, t.queue, t.priority, t.max_attempts, t.timeout, t.retry, t.description,
       w.workers, w.hosts, w.disagree, t.published_at
  FROM pgsched.tasks t
  JOIN LATERAL (
        SELECT array_agg(o.worker_id ORDER BY o.worker_id) AS workers,
               array_agg(DISTINCT k.host) AS hosts,
               count(DISTINCT (o.queue, o.priority, o.max_attempts, o.timeout)) > 1 AS disagree
          FROM pgsched.tasks o JOIN pgsched.workers k ON k.id = o.worker_id
         WHERE o.name = t.name) w ON true
 ORDER BY t.name, t.published_at DESC, t.worker_id DESC;
COMMENT ON VIEW pgsched.registered_tasks IS 'One row per task some live worker serves: the defaults jobs get (from the newest publication when workers disagree), and which workers serve it.';
COMMENT ON COLUMN pgsched.registered_tasks.name IS 'Task name.';
COMMENT ON COLUMN pgsched.registered_tasks.queue IS 'Default queue of the task''s jobs.';
COMMENT ON COLUMN pgsched.registered_tasks.priority IS 'Default priority of the task''s jobs.';
COMMENT ON COLUMN pgsched.registered_tasks.max_attempts IS 'Default max_attempts of the task''s jobs.';
COMMENT ON COLUMN pgsched.registered_tasks.timeout IS 'Timeout of one attempt (NULL: none).';
COMMENT ON COLUMN pgsched.registered_tasks.retry IS 'Retry policy in words.';
COMMENT ON COLUMN pgsched.registered_tasks.description IS 'First line of the docstring.';
COMMENT ON COLUMN pgsched.registered_tasks.workers IS 'Ids of the live workers that serve the task.';
COMMENT ON COLUMN pgsched.registered_tasks.hosts IS 'Hosts of those workers.';
COMMENT ON COLUMN pgsched.registered_tasks.disagree IS 'True when the serving workers declare different defaults (a deploy under way): the newest wins.';
COMMENT ON COLUMN pgsched.registered_tasks.published_at IS 'When the row giving the defaults was published.';

-- The one home of the defaults rule: what the caller set, else the registry, else the built-ins.
-- PL/pgSQL, not SQL: its query plan is kept for the session (a SQL function with a pinned search_path
-- is planned at every call, about 0.4 ms per inserted row).
CREATE FUNCTION pgsched.task_defaults(p_task text, OUT queue text, OUT priority smallint, OUT max_attempts integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pgsched AS $$
BEGIN
    SELECT t.queue, t.priority, t.max_attempts INTO queue, priority, max_attempts FROM pgsched.tasks t
     WHERE t.name = p_task ORDER BY t.published_at DESC, t.worker_id DESC LIMIT 1;
    queue := coalesce(queue, 'default');
    priority := coalesce(priority, 0);
    max_attempts := coalesce(max_attempts, 5);
END $$;
COMMENT ON FUNCTION pgsched.task_defaults(text, OUT text, OUT smallint, OUT integer) IS 'Queue, priority and max_attempts a job of this task gets when its insert leaves them out: the newest publication in pgsched.tasks, else ''default'', 0 and 5. Resolved once, at insert, and stored in the job.';

CREATE FUNCTION pgsched.jobs_fill_defaults() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pgsched AS $$
DECLARE
    d record;
BEGIN
    d := pgsched.task_defaults(NEW.task);
    NEW.queue := coalesce(NEW.queue, d.queue);
    NEW.priority := coalesce(NEW.priority, d.priority);
    NEW.max_attempts := coalesce(NEW.max_attempts, d.max_attempts);
    RETURN NEW;
END $$;
COMMENT ON FUNCTION pgsched.jobs_fill_defaults() IS 'BEFORE INSERT on jobs, only for rows missing queue, priority or max_attempts: fills them from pgsched.task_defaults (NOT NULL is checked after it).';

ALTER TABLE pgsched.jobs ALTER COLUMN queue DROP DEFAULT,
                         ALTER COLUMN priority DROP DEFAULT,
                         ALTER COLUMN max_attempts DROP DEFAULT;
CREATE TRIGGER jobs_fill_defaults BEFORE INSERT ON pgsched.jobs FOR EACH ROW
    WHEN (NEW.queue IS NULL OR NEW.priority IS NULL OR NEW.max_attempts IS NULL)
    EXECUTE FUNCTION pgsched.jobs_fill_defaults();
COMMENT ON TRIGGER jobs_fill_defaults ON pgsched.jobs IS 'Fills queue, priority and max_attempts left out of an insert from the task registry (pgsched.task_defaults).';
COMMENT ON COLUMN pgsched.jobs.queue IS 'Queue name (^[a-z0-9][a-z0-9_.-]{0,62}$); workers subscribe to queues. Left out of an insert: the task''s declared queue (pgsched.registered_tasks), else ''default''.';
COMMENT ON COLUMN pgsched.jobs.priority IS 'Higher runs first (-1000..1000). Left out of an insert: the task''s declared priority, else 0.';
COMMENT ON COLUMN pgsched.jobs.max_attempts IS 'Attempts before the job is dead (1..1000). Left out of an insert: the task''s declared max_attempts, else 5.';

-- Schedules without a queue, priority or max_attempts fire jobs with the task's defaults.
ALTER TABLE pgsched.schedules ALTER COLUMN queue DROP DEFAULT, ALTER COLUMN queue DROP NOT NULL,
                              ALTER COLUMN priority DROP DEFAULT, ALTER COLUMN priority DROP NOT NULL;
COMMENT ON COLUMN pgsched.schedules.queue IS 'Queue of the fired jobs; NULL: the task''s declared queue at each fire.';
COMMENT ON COLUMN pgsched.schedules.priority IS 'Priority of the fired jobs; NULL: the task''s declared priority at each fire.';

-- Tags and meta: partial indexes, so jobs without them add nothing to any index.
ALTER TABLE pgsched.jobs
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN meta jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN expires_at timestamptz,
    ADD CONSTRAINT jobs_tags_valid CHECK (cardinality(tags) <= 32 AND array_position(tags, NULL) IS NULL),
    ADD CONSTRAINT jobs_meta_is_object CHECK (jsonb_typeof(meta) = 'object');
COMMENT ON COLUMN pgsched.jobs.tags IS 'Labels for finding jobs (up to 32); filter with tags @> ARRAY[...] AND tags <> ''{}'' (jobs_tags_idx).';
COMMENT ON COLUMN pgsched.jobs.meta IS 'Free JSON object about the job (not its arguments); filter with meta @> ''{...}'' AND meta <> ''{}'' (jobs_meta_idx).';
COMMENT ON COLUMN pgsched.jobs.expires_at IS 'Deadline to start: a job not started (a first time) by then ends as cancelled with an errors entry of kind "expired", and never runs; once started, its retries are not bound by it. NULL: no deadline.';
CREATE INDEX jobs_tags_idx ON pgsched.jobs USING gin (tags) WHERE tags <> '{}';
CREATE INDEX jobs_meta_idx ON pgsched.jobs USING gin (meta jsonb_path_ops) WHERE meta <> '{}';
-- Jobs never started and not finished, with a deadline: the leader's sweep reads only these (no state in
-- the predicate, so no index of queued jobs can stand in for it in a plan made on stale statistics).
CREATE INDEX jobs_expiring_idx ON pgsched.jobs (expires_at)
    WHERE expires_at IS NOT NULL AND started_at IS NULL AND finished_at IS NULL;

CREATE FUNCTION pgsched.expired_entry(p_expires_at timestamptz, p_at timestamptz) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pgsched AS $$
    SELECT jsonb_build_array(jsonb_build_object(
        'kind', 'expired', 'at', p_at, 'expires_at', p_expires_at,
        'error', 'expired: not started by ' || p_expires_at::text))
$$;
COMMENT ON FUNCTION pgsched.expired_entry(timestamptz, timestamptz) IS 'The errors entry (as a one-element array) of a job that ended because it was not started by its expires_at: {"kind": "expired", ...}.';

-- A queued job whose task no live worker has published: visible, and it spends no attempt.
CREATE VIEW pgsched.unserved_jobs AS
SELECT j.id, j.queue, j.task, j.run_at, j.expires_at, j.created_at, 'no worker serves this task'::text AS reason
  FROM pgsched.jobs j
 WHERE j.state = 'queued'
   AND NOT EXISTS (SELECT 1 FROM pgsched.tasks t WHERE t.name = j.task);
COMMENT ON VIEW pgsched.unserved_jobs IS 'Queued jobs whose task no live worker serves: they wait, spending no attempt, until a worker that knows the task registers or their expires_at passes.';
COMMENT ON COLUMN pgsched.unserved_jobs.id IS 'Job id.';
COMMENT ON COLUMN pgsched.unserved_jobs.queue IS 'Queue of the job.';
COMMENT ON COLUMN pgsched.unserved_jobs.task IS 'The task nobody serves.';
COMMENT ON COLUMN pgsched.unserved_jobs.run_at IS 'When the job is due.';
COMMENT ON COLUMN pgsched.unserved_jobs.expires_at IS 'Its deadline to start, if any.';
COMMENT ON COLUMN pgsched.unserved_jobs.created_at IS 'When it was enqueued.';
COMMENT ON COLUMN pgsched.unserved_jobs.reason IS 'Why it waits.';

-- enqueue() leaves queue, priority and max_attempts to the task's defaults when not given, and
-- learns tags, meta and a deadline to start.
DROP FUNCTION pgsched.enqueue(text, jsonb, text, integer, timestamptz, text, integer, interval, text, integer);
CREATE FUNCTION pgsched.enqueue(
    task text,
    args jsonb DEFAULT '{}'::jsonb,
    queue text DEFAULT NULL,
    priority integer DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    run_key text DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    timeout interval DEFAULT NULL,
    concurrency_key text DEFAULT NULL,
    concurrency_limit integer DEFAULT NULL,
    tags text[] DEFAULT '{}',
    meta jsonb DEFAULT '{}'::jsonb,
    expires_at timestamptz DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pgsched AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    IF task IS NULL OR task !~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$' THEN
        RAISE EXCEPTION 'pgsched.enqueue: invalid task name %', coalesce(quote_literal(task), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A task name is letters, digits, _ . : - and starts with a letter or _.';
    END IF;
    IF queue IS NOT NULL AND queue !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'pgsched.enqueue: invalid queue name %', quote_literal(queue)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A queue name matches ^[a-z0-9][a-z0-9_.-]{0,62}$; leave it out for the task''s queue.';
    END IF;
    IF args IS NULL OR jsonb_typeof(args) <> 'object' THEN
        RAISE EXCEPTION 'pgsched.enqueue: args must be a JSON object, got %', coalesce(jsonb_typeof(args), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF priority IS NOT NULL AND priority NOT BETWEEN -1000 AND 1000 THEN
        RAISE EXCEPTION 'pgsched.enqueue: priority must be between -1000 and 1000, got %', priority
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_attempts IS NOT NULL AND max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'pgsched.enqueue: max_attempts must be between 1 and 1000, got %', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF concurrency_key IS NOT NULL AND length(concurrency_key) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'pgsched.enqueue: concurrency_key must be 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF concurrency_limit IS NOT NULL AND (concurrency_key IS NULL OR concurrency_limit NOT BETWEEN 1 AND 10000) THEN
        RAISE EXCEPTION 'pgsched.enqueue: concurrency_limit needs a concurrency_key and must be between 1 and 10000, got %',
            concurrency_limit USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tags IS NULL OR cardinality(tags) > 32 OR array_position(tags, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'pgsched.enqueue: tags must be an array of up to 32 non-null texts'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF meta IS NULL OR jsonb_typeof(meta) <> 'object' THEN
        RAISE EXCEPTION 'pgsched.enqueue: meta must be a JSON object, got %', coalesce(jsonb_typeof(meta), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        INSERT INTO pgsched.jobs AS j (task, args, queue, priority, run_at, run_key, max_attempts, timeout,
                                       concurrency_key, concurrency_limit, tags, meta, expires_at)
        VALUES (enqueue.task, enqueue.args, enqueue.queue, enqueue.priority::smallint,
                coalesce(enqueue.run_at, now()), enqueue.run_key, enqueue.max_attempts, enqueue.timeout,
                enqueue.concurrency_key, enqueue.concurrency_limit, enqueue.tags, enqueue.meta, enqueue.expires_at)
        ON CONFLICT (run_key) WHERE run_key IS NOT NULL DO NOTHING
        RETURNING j.id INTO new_id;
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
        SELECT j.id INTO new_id FROM pgsched.jobs j WHERE j.run_key = enqueue.run_key;
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
        -- the conflicting row was deleted in between: try again
    END LOOP;
END $$;
COMMENT ON FUNCTION pgsched.enqueue(text, jsonb, text, integer, timestamptz, text, integer, interval, text, integer, text[], jsonb, timestamptz) IS
    'Enqueue a job and return its id; with a run_key that exists, return the existing job''s id and create nothing. Queue, priority and max_attempts left NULL come from the task''s declaration (pgsched.task_defaults). A concurrency_key limits how many jobs of the key run at once (concurrency_limit, default 1); tags and meta label the job; a job not started by expires_at ends as expired.';

-- The limited claim ends a claimed job past its deadline instead of starting it.
CREATE OR REPLACE FUNCTION pgsched.claim_limited(p_queues text[], p_n integer, p_worker bigint, p_at timestamptz)
RETURNS TABLE (id bigint, queue text, task text, args jsonb, attempt integer,
               timeout_seconds double precision, waited_seconds double precision, limited boolean,
               lease bigint, isolate boolean)
LANGUAGE plpgsql SET enable_seqscan = off SET search_path = pg_catalog, pgsched AS $$
DECLARE
    at timestamptz := coalesce(p_at, now());
    left_n integer := p_n;
    q text;
    s pgsched.queues%ROWTYPE;
    limited boolean;
    room integer;
    running_q integer;
    burst double precision;
    level double precision;
    key_cap integer;
    last_key text;
    seen integer;
    ids bigint[];
    claim_lease bigint := pgsched.new_lease();
BEGIN
    FOREACH q IN ARRAY p_queues LOOP
        EXIT WHEN left_n <= 0;
        s := NULL;
        SELECT * INTO s FROM pgsched.queues qs WHERE qs.name = q;
        CONTINUE WHEN s.paused IS TRUE;
        limited := s.concurrency IS NOT NULL OR s.rate_limit IS NOT NULL;
        CONTINUE WHEN NOT limited AND NOT EXISTS (
            SELECT 1 FROM pgsched.jobs j WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue = q);
        PERFORM pg_advisory_xact_lock(pgsched.lock_namespace(), hashtext('pgsched.queue:' || q));
        SELECT * INTO s FROM pgsched.queues qs WHERE qs.name = q;  -- as of holding the lock
        CONTINUE WHEN s.paused IS TRUE;
        limited := s.concurrency IS NOT NULL OR s.rate_limit IS NOT NULL;
        room := left_n;
        IF s.concurrency IS NOT NULL THEN
            SELECT count(*) INTO running_q FROM pgsched.jobs j WHERE j.state = 'running' AND j.queue = q;
            room := least(room, s.concurrency - running_q);
        END IF;
        IF s.rate_limit IS NOT NULL THEN
            burst := coalesce(s.rate_burst, greatest(1, ceil(s.rate_limit / 20.0)));
            level := CASE WHEN s.tokens IS NULL OR s.refilled_at IS NULL THEN burst
                          ELSE least(burst, s.tokens + greatest(0, extract(epoch FROM at - s.refilled_at))
                                                       * s.rate_limit / extract(epoch FROM s.rate_period))
                     END;
            room := least(room, floor(level)::integer);
        END IF;
        IF room > 0 THEN
            key_cap := p_n * 2 + 16;
            WITH RECURSIVE keys(k, n) AS (
                (SELECT j.concurrency_key, 1 FROM pgsched.jobs j
                  WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue = q
                    AND j.concurrency_key > coalesce(s.key_cursor, '')
                  ORDER BY j.concurrency_key LIMIT 1)
                UNION ALL
                SELECT (SELECT j.concurrency_key FROM pgsched.jobs j
                         WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue = q
                           AND j.concurrency_key > keys.k
                         ORDER BY j.concurrency_key LIMIT 1), keys.n + 1
                  FROM keys WHERE keys.k IS NOT NULL AND keys.n < key_cap
            ),
            busy AS (
                SELECT j.concurrency_key AS k, count(*)::integer AS n FROM pgsched.jobs j
                 WHERE j.state = 'running' AND j.queue = q AND j.concurrency_key IS NOT NULL
                 GROUP BY j.concurrency_key
            ),
            keyed AS (
                SELECT c.id, c.priority, c.run_at, keys.k
                  FROM keys
                  LEFT JOIN busy ON busy.k = keys.k
                 CROSS JOIN LATERAL (
                        SELECT coalesce(h.concurrency_limit, 1) AS lim FROM pgsched.jobs h
                         WHERE h.state = 'queued' AND h.queue = q AND h.concurrency_key = keys.k AND h.run_at <= at
                         ORDER BY h.priority DESC, h.run_at, h.id LIMIT 1) head
                 CROSS JOIN LATERAL (
                        SELECT j.id, j.priority, j.run_at FROM pgsched.jobs j
                         WHERE j.state = 'queued' AND j.queue = q AND j.concurrency_key = keys.k AND j.run_at <= at
                         ORDER BY j.priority DESC, j.run_at, j.id
                         LIMIT greatest(0, least(head.lim - coalesce(busy.n, 0), room))
                           FOR UPDATE SKIP LOCKED) c
                 WHERE keys.k IS NOT NULL
            ),
            plain AS (
                SELECT j.id, j.priority, j.run_at, NULL::text AS k FROM pgsched.jobs j
                 WHERE limited AND j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue = q AND j.run_at <= at
                 ORDER BY j.priority DESC, j.run_at, j.id
                 LIMIT room
                   FOR UPDATE SKIP LOCKED
            ),
            chosen AS (
                SELECT u.id FROM (SELECT * FROM keyed UNION ALL SELECT * FROM plain) u
                 ORDER BY u.priority DESC, u.run_at, u.id LIMIT room
            )
            SELECT array_agg(chosen.id), (SELECT max(keys.k) FROM keys), (SELECT count(*) FROM keys WHERE keys.k IS NOT NULL)
              INTO ids, last_key, seen
              FROM chosen;
            -- More keys than one call visits: start after the last one next time; else from the start.
            IF seen >= key_cap OR s.key_cursor IS NOT NULL THEN
                INSERT INTO pgsched.queues AS qs (name, key_cursor) VALUES (q, CASE WHEN seen >= key_cap THEN last_key END)
                ON CONFLICT (name) DO UPDATE SET key_cursor = EXCLUDED.key_cursor;
            END IF;
            IF ids IS NOT NULL THEN
                -- A claimed job past its deadline ends as expired instead of starting (never run late).
                UPDATE pgsched.jobs j
                   SET state = 'cancelled', finished_at = at, errors = j.errors || pgsched.expired_entry(j.expires_at, at)
                 WHERE j.id = ANY (ids) AND j.state = 'queued' AND j.expires_at <= at AND j.started_at IS NULL;
                RETURN QUERY
                UPDATE pgsched.jobs j
                   SET state = 'running', attempt = j.attempt + 1, worker_id = p_worker, started_at = at,
                       lease = claim_lease
                 WHERE j.id = ANY (ids) AND j.state = 'queued'
                   AND (j.expires_at IS NULL OR j.expires_at > at OR j.started_at IS NOT NULL)
                RETURNING j.id, j.queue, j.task, j.args, j.attempt,
                          extract(epoch FROM j.timeout)::float8,
                          extract(epoch FROM j.started_at - j.run_at)::float8, true,
                          j.lease, j.alone;
                GET DIAGNOSTICS room = ROW_COUNT;
                left_n := left_n - room;
            ELSE
                room := 0;
            END IF;
        ELSE
            room := 0;
        END IF;
        IF s.rate_limit IS NOT NULL THEN
            UPDATE pgsched.queues qs SET tokens = level - room, refilled_at = at WHERE qs.name = q;
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION pgsched.claim_limited(text[], integer, bigint, timestamptz) IS
    'Claim up to p_n due jobs of limited queues and of concurrency keys for worker p_worker, within every limit, under one new lease; a claimed job past its expires_at ends as expired instead; called by the worker''s claim.';
