-- 0036: the limited claim (pgsched.claim_limited) visits its batch and the bookkeeping of its limits whatever the
-- statistics say, as the plain claim does since 0034. Planned under some statistics states, its kept plans read the
-- whole backlog or the whole running set on every claim: the running jobs of a capped queue were counted through
-- jobs_running_idx (every running job of every queue), the running jobs per concurrency key were grouped from all of
-- the queue's running keyed jobs before any key was looked at, and the claim's writes by id could walk
-- jobs_waiting_idx (every queued job) instead of the primary key.
--
-- Now every read is a shape with one way to run it:
-- * a queue's running jobs, and one key's, come from jobs_running_queue_idx (new), counted up to the limit that
--   uses them (a bounded LIMIT), and a key's are probed only for the keys the claim visits;
-- * every ordered read (the next key, a key's first due job, the jobs claimed) is an ORDER BY ... LIMIT that only its
--   index can give in order (sorts and bitmap scans are off, as in claim_candidates), and the queue's jobs without a
--   key come from pgsched.claim_candidates itself;
-- * the writes by id say "a live job" rather than "queued", which only the primary key can answer.
-- JIT is off for the function: a disabled node (the small sort that merges keyed and plain candidates cannot be
-- avoided) adds 1e10 to a plan's cost, far past jit_above_cost, and compiling the statement took ~0.6 s per claim.
-- That, not a change of order or a LIMIT before a filter, is why turning sorts and bitmap scans off here before
-- made the rate-limit test start 50 jobs in 10 s: four workers queued on the queue's advisory lock behind one
-- JIT compilation after another.

-- "queue IS NOT NULL" (always true) keeps the index to statements that name a queue: a statement of a worker's running
-- jobs (the reconcile, the finish) cannot prove it, so cannot read the whole running set through this index instead of
-- jobs_running_idx (it did, planned while ANALYZE had seen no running job).
CREATE INDEX jobs_running_queue_idx ON pgsched.jobs_live (queue, concurrency_key)
    WHERE state = 'running' AND queue IS NOT NULL;
COMMENT ON INDEX pgsched.jobs_running_queue_idx IS
    'Running jobs per queue and concurrency key: the limited claim counts them up to the queue''s or the key''s limit.';

CREATE OR REPLACE FUNCTION pgsched.claim_limited(p_queues text[], p_n integer, p_worker bigint, p_at timestamptz)
    RETURNS TABLE(id bigint, queue text, task text, args jsonb, attempt integer, timeout_seconds double precision,
                  waited_seconds double precision, limited boolean, lease bigint, isolate boolean)
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_sort TO 'off'
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
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
        CONTINUE WHEN NOT limited AND (  -- the queue's first key, in jobs_keyed_claim_idx's order
            SELECT j.concurrency_key FROM pgsched.jobs j
             WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue = q
             ORDER BY j.concurrency_key LIMIT 1) IS NULL;
        PERFORM pg_advisory_xact_lock(pgsched.lock_namespace(), hashtext('pgsched.queue:' || q));
        SELECT * INTO s FROM pgsched.queues qs WHERE qs.name = q;  -- as of holding the lock
        CONTINUE WHEN s.paused IS TRUE;
        limited := s.concurrency IS NOT NULL OR s.rate_limit IS NOT NULL;
        room := left_n;
        IF s.concurrency IS NOT NULL THEN
            SELECT count(*) INTO running_q
              FROM (SELECT 1 FROM pgsched.jobs j  -- in jobs_running_queue_idx's order: only it can give it
                     WHERE j.state = 'running' AND j.queue = q
                     ORDER BY j.concurrency_key LIMIT s.concurrency) r;
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
            keyed AS (
                SELECT c.id, c.priority, c.run_at, keys.k
                  FROM keys
                 CROSS JOIN LATERAL (  -- the key's first due job sets its limit
                        SELECT coalesce(h.concurrency_limit, 1) AS lim FROM pgsched.jobs h
                         WHERE h.state = 'queued' AND h.queue = q AND h.concurrency_key = keys.k AND h.run_at <= at
                         ORDER BY h.priority DESC, h.run_at, h.id LIMIT 1) head
                 CROSS JOIN LATERAL (  -- the key's running jobs, counted up to that limit
                        SELECT count(*)::integer AS n
                          FROM (SELECT 1 FROM pgsched.jobs r
                                 WHERE r.state = 'running' AND r.queue = q AND r.concurrency_key = keys.k
                                 LIMIT head.lim) r) busy
                 CROSS JOIN LATERAL (
                        SELECT j.id, j.priority, j.run_at FROM pgsched.jobs j
                         WHERE j.state = 'queued' AND j.queue = q AND j.concurrency_key = keys.k AND j.run_at <= at
                         ORDER BY j.priority DESC, j.run_at, j.id
                         LIMIT greatest(0, least(head.lim - busy.n, room))
                           FOR UPDATE SKIP LOCKED) c
                 WHERE keys.k IS NOT NULL
            ),
            plain AS (  -- a limited queue's jobs without a key, as the plain claim takes them
                SELECT c.id, c.priority, c.run_at, NULL::text AS k
                  FROM pgsched.claim_candidates(q, at, room) c
                 WHERE limited
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
                -- Locked above, so still queued; "live" (not finished) leaves only the primary key to read them by.
                -- A claimed job past its deadline ends as expired instead of starting (never run late).
                UPDATE pgsched.jobs j
                   SET state = 'cancelled', finished_at = at, errors = j.errors || pgsched.expired_entry(j.expires_at, at)
                 WHERE j.id = ANY (ids) AND j.state NOT IN ('succeeded', 'dead', 'cancelled')
                   AND j.expires_at <= at AND j.started_at IS NULL;
                RETURN QUERY
                UPDATE pgsched.jobs j
                   SET state = 'running', attempt = j.attempt + 1, worker_id = p_worker, started_at = at,
                       lease = claim_lease
                 WHERE j.id = ANY (ids) AND j.state NOT IN ('succeeded', 'dead', 'cancelled')
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
