-- 0005: flow control, enforced by the claim itself so it holds across every worker process and host.
--
-- pgsched.queues holds per-queue settings: paused, a global concurrency limit, a token-bucket
-- rate limit. A job may carry a concurrency_key (say a customer id) with a concurrency_limit:
-- at most that many jobs of the key run at once, and a busy key never blocks the other keys.
-- Queues without settings and jobs without a key keep the plain claim (one statement, no lock);
-- everything limited goes through pgsched.claim_limited, serialized per queue by an advisory
-- transaction lock, so counting running jobs and claiming happen as one step.

CREATE TABLE pgsched.queues (
    name        text PRIMARY KEY CONSTRAINT queues_name_valid CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    paused      boolean NOT NULL DEFAULT false,
    concurrency integer CONSTRAINT queues_concurrency_range CHECK (concurrency BETWEEN 1 AND 1000000),
    rate_limit  integer CONSTRAINT queues_rate_limit_range CHECK (rate_limit BETWEEN 1 AND 1000000),
    rate_period interval NOT NULL DEFAULT interval '1 second'
                CONSTRAINT queues_rate_period_range CHECK (rate_period BETWEEN interval '1 millisecond' AND interval '1 day'),
    rate_burst  integer CONSTRAINT queues_rate_burst_range CHECK (rate_burst BETWEEN 1 AND 1000000),
    tokens      double precision,
    refilled_at timestamptz,
    key_cursor  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgsched.queues IS 'Per-queue flow control, read by every claim: pause, global concurrency, rate limit. No row (or all limits NULL) means unlimited.';
COMMENT ON COLUMN pgsched.queues.name IS 'Queue name.';
COMMENT ON COLUMN pgsched.queues.paused IS 'No job of the queue starts while true (running jobs go on).';
COMMENT ON COLUMN pgsched.queues.concurrency IS 'At most this many jobs of the queue running at once, cluster-wide; NULL: unlimited.';
COMMENT ON COLUMN pgsched.queues.rate_limit IS 'At most this many job starts per rate_period (token bucket); NULL: unlimited.';
COMMENT ON COLUMN pgsched.queues.rate_period IS 'Period of rate_limit.';
COMMENT ON COLUMN pgsched.queues.rate_burst IS 'Bucket size: starts allowed at once after a quiet spell; NULL: max(1, rate_limit / 20).';
COMMENT ON COLUMN pgsched.queues.tokens IS 'Token bucket level at refilled_at (maintained by the claim).';
COMMENT ON COLUMN pgsched.queues.refilled_at IS 'When tokens was last computed.';
COMMENT ON COLUMN pgsched.queues.key_cursor IS 'Round-robin position over concurrency keys when there are more keys than one claim looks at.';
COMMENT ON COLUMN pgsched.queues.updated_at IS 'Last change of the settings.';

ALTER TABLE pgsched.jobs
    ADD COLUMN concurrency_key text,
    ADD COLUMN concurrency_limit integer;
ALTER TABLE pgsched.jobs
    ADD CONSTRAINT jobs_concurrency_key_length
        CHECK (concurrency_key IS NULL OR length(concurrency_key) BETWEEN 1 AND 200) NOT VALID,
    ADD CONSTRAINT jobs_concurrency_limit_range
        CHECK (concurrency_limit IS NULL OR (concurrency_key IS NOT NULL AND concurrency_limit BETWEEN 1 AND 10000)) NOT VALID;
COMMENT ON COLUMN pgsched.jobs.concurrency_key IS 'Jobs sharing a key (in a queue) run at most concurrency_limit at once; NULL: no key.';
COMMENT ON COLUMN pgsched.jobs.concurrency_limit IS 'Limit of concurrency_key (NULL: 1); the key''s next job decides.';

-- The plain claim takes keyless jobs only; keyed jobs have their own index, in key order, so the
-- limited claim can step from key to key (a loose index scan) without reading a busy key's backlog.
DROP INDEX pgsched.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON pgsched.jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued' AND concurrency_key IS NULL;
CREATE INDEX jobs_keyed_claim_idx ON pgsched.jobs (queue, concurrency_key, priority DESC, run_at, id)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;
-- Running jobs of a queue or key are counted through jobs_running_idx (the running set is small).

-- Settings changes wake idle workers of the queue (a resume, a higher limit).
CREATE FUNCTION pgsched.queues_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgsched_jobs', NEW.name);
    RETURN NULL;
END $$;
CREATE TRIGGER queues_notify_change AFTER INSERT OR UPDATE OF paused, concurrency, rate_limit, rate_period, rate_burst
    ON pgsched.queues FOR EACH ROW EXECUTE FUNCTION pgsched.queues_notify_change();

CREATE FUNCTION pgsched.pause_queue(queue text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO pgsched.queues (name, paused) VALUES (pause_queue.queue, true)
    ON CONFLICT (name) DO UPDATE SET paused = true, updated_at = now();
$$;
COMMENT ON FUNCTION pgsched.pause_queue(text) IS 'Stop starting jobs of a queue, cluster-wide (running jobs go on).';

CREATE FUNCTION pgsched.resume_queue(queue text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO pgsched.queues (name, paused) VALUES (resume_queue.queue, false)
    ON CONFLICT (name) DO UPDATE SET paused = false, updated_at = now();
$$;
COMMENT ON FUNCTION pgsched.resume_queue(text) IS 'Start jobs of a paused queue again (wakes idle workers).';

-- The limited claim. Per queue of p_queues that is limited (concurrency or rate) or has due keyed
-- jobs, and not paused: take the queue's advisory transaction lock, count its running jobs (once,
-- by key), refill the token bucket, then claim at most the room left: keyless jobs (limited
-- queues only; the plain claim takes the others) and, per key with room, that key's next jobs.
-- Keys are visited in key order from key_cursor, at most p_n * 2 + 16 of them per call.
CREATE FUNCTION pgsched.claim_limited(p_queues text[], p_n integer, p_worker bigint, p_at timestamptz)
RETURNS TABLE (id bigint, queue text, task text, args jsonb, attempt integer,
               timeout_seconds double precision, waited_seconds double precision, limited boolean)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
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
                RETURN QUERY
                UPDATE pgsched.jobs j
                   SET state = 'running', attempt = j.attempt + 1, worker_id = p_worker, started_at = at
                 WHERE j.id = ANY (ids) AND j.state = 'queued'
                RETURNING j.id, j.queue, j.task, j.args, j.attempt,
                          extract(epoch FROM j.timeout)::float8,
                          extract(epoch FROM j.started_at - j.run_at)::float8, true;
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
    'Claim up to p_n due jobs of limited queues and of concurrency keys for worker p_worker, within every limit; called by the worker''s claim.';

-- Seconds until a rate-limited queue with due jobs has a token again (NULL: none is waiting on tokens).
CREATE FUNCTION pgsched.rate_wait(p_queues text[], p_at timestamptz) RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT min((1 - least(b.burst, b.level)) * extract(epoch FROM s.rate_period) / s.rate_limit)
      FROM pgsched.queues s
     CROSS JOIN LATERAL (
            SELECT coalesce(s.rate_burst, greatest(1, ceil(s.rate_limit / 20.0)))::float8 AS burst,
                   CASE WHEN s.tokens IS NULL OR s.refilled_at IS NULL THEN 1e9
                        ELSE s.tokens + greatest(0, extract(epoch FROM p_at - s.refilled_at))
                                        * s.rate_limit / extract(epoch FROM s.rate_period)
                   END AS level) b
     WHERE s.name = ANY (p_queues) AND s.rate_limit IS NOT NULL AND NOT s.paused AND b.level < 1
       AND (EXISTS (SELECT 1 FROM pgsched.jobs j
                     WHERE j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue = s.name AND j.run_at <= p_at)
            OR EXISTS (SELECT 1 FROM pgsched.jobs j
                        WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue = s.name AND j.run_at <= p_at))
$$;
COMMENT ON FUNCTION pgsched.rate_wait(text[], timestamptz) IS
    'Seconds until the first rate-limited queue of p_queues that has due jobs earns a token; NULL when none waits.';

-- enqueue() learns the concurrency key.
DROP FUNCTION pgsched.enqueue(text, jsonb, text, integer, timestamptz, text, integer, interval);
CREATE FUNCTION pgsched.enqueue(
    task text,
    args jsonb DEFAULT '{}'::jsonb,
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    run_key text DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    timeout interval DEFAULT NULL,
    concurrency_key text DEFAULT NULL,
    concurrency_limit integer DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    IF task IS NULL OR task !~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$' THEN
        RAISE EXCEPTION 'pgsched.enqueue: invalid task name %', coalesce(quote_literal(task), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A task name is letters, digits, _ . : - and starts with a letter or _.';
    END IF;
    IF queue IS NULL OR queue !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'pgsched.enqueue: invalid queue name %', coalesce(quote_literal(queue), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A queue name matches ^[a-z0-9][a-z0-9_.-]{0,62}$.';
    END IF;
    IF args IS NULL OR jsonb_typeof(args) <> 'object' THEN
        RAISE EXCEPTION 'pgsched.enqueue: args must be a JSON object, got %', coalesce(jsonb_typeof(args), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF priority IS NULL OR priority NOT BETWEEN -1000 AND 1000 THEN
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
    LOOP
        INSERT INTO pgsched.jobs AS j (task, args, queue, priority, run_at, run_key, max_attempts, timeout,
                                       concurrency_key, concurrency_limit)
        VALUES (enqueue.task, enqueue.args, enqueue.queue, enqueue.priority::smallint,
                coalesce(enqueue.run_at, now()), enqueue.run_key,
                coalesce(enqueue.max_attempts, 5), enqueue.timeout,
                enqueue.concurrency_key, enqueue.concurrency_limit)
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
COMMENT ON FUNCTION pgsched.enqueue(text, jsonb, text, integer, timestamptz, text, integer, interval, text, integer) IS
    'Enqueue a job and return its id; with a run_key that exists, return the existing job''s id and create nothing. A concurrency_key limits how many jobs of the key run at once (concurrency_limit, default 1).';

-- Queue statistics with the queue's settings (configured queues without jobs appear too).
DROP VIEW pgsched.queue_stats;
CREATE VIEW pgsched.queue_stats AS
SELECT n.queue,
       count(j.id) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()) AS due,
       count(j.id) FILTER (WHERE j.state = 'queued' AND j.run_at > now())  AS scheduled,
       count(j.id) FILTER (WHERE j.state = 'running')                      AS running,
       count(j.id) FILTER (WHERE j.state = 'succeeded')                    AS succeeded,
       count(j.id) FILTER (WHERE j.state = 'dead')                         AS dead,
       count(j.id) FILTER (WHERE j.state = 'cancelled')                    AS cancelled,
       now() - min(j.run_at) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()) AS oldest_due_age,
       coalesce(s.paused, false) AS paused,
       s.concurrency AS concurrency_limit,
       s.rate_limit,
       s.rate_period,
       count(DISTINCT j.concurrency_key) FILTER (WHERE j.state = 'running') AS running_keys
  FROM (SELECT DISTINCT jj.queue FROM pgsched.jobs jj UNION SELECT qs.name FROM pgsched.queues qs) n
  LEFT JOIN pgsched.jobs j ON j.queue = n.queue
  LEFT JOIN pgsched.queues s ON s.name = n.queue
 GROUP BY n.queue, s.paused, s.concurrency, s.rate_limit, s.rate_period;
COMMENT ON VIEW pgsched.queue_stats IS 'Per queue: jobs due now, scheduled for later, running, finished by state, the age of the oldest due job, and its flow-control settings.';
COMMENT ON COLUMN pgsched.queue_stats.queue IS 'Queue name.';
COMMENT ON COLUMN pgsched.queue_stats.due IS 'Queued jobs whose run_at has passed.';
COMMENT ON COLUMN pgsched.queue_stats.scheduled IS 'Queued jobs waiting for a future run_at (delayed or retrying).';
COMMENT ON COLUMN pgsched.queue_stats.running IS 'Jobs running now.';
COMMENT ON COLUMN pgsched.queue_stats.succeeded IS 'Succeeded jobs not yet pruned.';
COMMENT ON COLUMN pgsched.queue_stats.dead IS 'Jobs out of attempts (dead-letter queue).';
COMMENT ON COLUMN pgsched.queue_stats.cancelled IS 'Cancelled jobs not yet pruned.';
COMMENT ON COLUMN pgsched.queue_stats.oldest_due_age IS 'How long the oldest due job has waited.';
COMMENT ON COLUMN pgsched.queue_stats.paused IS 'The queue is paused (pgsched.pause_queue).';
COMMENT ON COLUMN pgsched.queue_stats.concurrency_limit IS 'Global concurrency limit of the queue (NULL: unlimited).';
COMMENT ON COLUMN pgsched.queue_stats.rate_limit IS 'Job starts allowed per rate_period (NULL: unlimited).';
COMMENT ON COLUMN pgsched.queue_stats.rate_period IS 'Period of rate_limit.';
COMMENT ON COLUMN pgsched.queue_stats.running_keys IS 'Distinct concurrency keys with a job running now.';
