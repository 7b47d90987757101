-- 0007: a fence per claim and fair blame for lost workers (issue 17).
--
-- Every claim stamps its rows with a lease token of its own (pgsched.new_lease()); finish, release,
-- cancel polls and transactional successes are fenced on (id, lease), so two copies of one attempt
-- (a claim whose commit a database crash lost, then claimed again) can never both write. The lease
-- is cleared whenever a row stops running. Workers publish which of their jobs have started
-- (workers.started, refreshed by claims and heartbeats): the reaper charges a worker loss only to
-- those, and hands the others back uncharged, in their old place (jobs.returns counts such
-- returns; past the loss limit a return is charged anyway, so an unpublished poison pill is still
-- caught). A job one charged loss short of the limit runs alone (jobs.alone).

CREATE SEQUENCE pgsched.lease_seq AS bigint CYCLE;
COMMENT ON SEQUENCE pgsched.lease_seq IS 'Low bits of lease tokens (see pgsched.new_lease()).';

-- A sequence alone can hand out a value twice across a crash (its advance is WAL-logged with the
-- claims, which commit without waiting for the flush); the clock in the high bits cannot.
CREATE FUNCTION pgsched.new_lease() RETURNS bigint LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgsched AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint * 1024 + nextval('pgsched.lease_seq') % 1024
$$;
COMMENT ON FUNCTION pgsched.new_lease() IS
    'A new lease token: microseconds since the epoch times 1024 plus a sequence value modulo 1024; unique across crashes while the clock does not go back.';

ALTER TABLE pgsched.jobs
    ADD COLUMN lease bigint,
    ADD COLUMN returns integer NOT NULL DEFAULT 0,
    ADD COLUMN alone boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN pgsched.jobs.lease IS 'Token of the claim running the job (NULL when not running); every write of the attempt is fenced on (id, lease).';
COMMENT ON COLUMN pgsched.jobs.alone IS 'Charged with worker losses up to one short of the limit: runs with nothing beside it in its worker, so a poison pill never takes an innocent job along.';
COMMENT ON COLUMN pgsched.jobs.returns IS 'Times the job was handed back uncharged after its worker was lost before the job had (visibly) started.';

ALTER TABLE pgsched.workers ADD COLUMN started bigint[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN pgsched.workers.started IS 'Ids of the jobs this worker has started and not finished, as of its last claim or heartbeat; the reaper charges a loss only to these.';

DROP FUNCTION pgsched.claim_limited(text[], integer, bigint, timestamptz);
CREATE FUNCTION pgsched.claim_limited(p_queues text[], p_n integer, p_worker bigint, p_at timestamptz)
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
                RETURN QUERY
                UPDATE pgsched.jobs j
                   SET state = 'running', attempt = j.attempt + 1, worker_id = p_worker, started_at = at,
                       lease = claim_lease
                 WHERE j.id = ANY (ids) AND j.state = 'queued'
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
    'Claim up to p_n due jobs of limited queues and of concurrency keys for worker p_worker, within every limit, under one new lease; called by the worker''s claim.';
