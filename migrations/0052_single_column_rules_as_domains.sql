-- 0052: the single-column rules of pgsched.jobs move from table CHECK constraints to domains (same names, same rules).
-- PostgreSQL re-reads a table's CHECK constraints from their stored node trees and plans them again in every
-- statement that writes a row (once per statement and partition written: ExecRelCheck's stringToNode and
-- expression_planner). The sixteen of pgsched.jobs were 15 KB of node text: about 60-70 us of server CPU in every
-- single-row enqueue (a quarter of its server time), and again in every claim, finish and cancel statement for each
-- partition a row moves to; and every constraint was evaluated again for every row moved between partitions, the
-- two name regexes included (about 8 % of the backends' CPU in a drain).
-- A domain's constraints are parsed once per backend (the type cache) and checked only where a value of the column
-- is written: an enqueue checks them all, a claim that sets attempt checks that one, a move checks none of the rest.
-- The rules that tie two columns together (concurrency_limit/key, run_key_scope/run_key, run_key_period) stay table
-- constraints; so do those of meta, tags and run_key, whose history partitions have indexes on the column (a type
-- change rebuilds a column's indexes; here only those of jobs_queued and jobs_running, the live jobs, are rebuilt).
-- The columns change type in place (a domain without constraints over the same type: no table rewrite); the domain
-- constraints are then added NOT VALID: every row already passed the very same rule as a table constraint, and a
-- validating scan per domain would read the whole history ten times. They are enforced on every value written.
-- An error names the same constraint as before (pgsched.db maps it to the field); its message now reads
-- 'value for domain pgsched.queue_name violates check constraint "jobs_queue_name_valid"'.
-- Views over these columns are dropped and made again from their own definitions, comments included; so is the
-- jobs_fill_defaults trigger, whose WHEN clause reads three of them.
-- PL/pgSQL's RETURN QUERY and recursive CTEs want exact column types: the functions that return these columns as
-- their base types now cast them.
-- Lock: ACCESS EXCLUSIVE on pgsched.jobs while the indexes of jobs_queued and jobs_running on these columns are rebuilt.

SET LOCAL pgsched.notify = 'off';

CREATE DOMAIN pgsched.queue_name AS text;
CREATE DOMAIN pgsched.task_name AS text;
CREATE DOMAIN pgsched.job_args AS jsonb;
CREATE DOMAIN pgsched.job_errors AS jsonb;
CREATE DOMAIN pgsched.job_attempt AS integer;
CREATE DOMAIN pgsched.job_priority AS smallint;
CREATE DOMAIN pgsched.job_max_attempts AS integer;
CREATE DOMAIN pgsched.job_progress AS real;
CREATE DOMAIN pgsched.job_timeout AS interval;
CREATE DOMAIN pgsched.concurrency_key AS text;

COMMENT ON DOMAIN pgsched.queue_name IS 'A job''s queue: 1-63 characters of a-z, 0-9, "_", "." and "-", starting with a letter or digit.';
COMMENT ON DOMAIN pgsched.task_name IS 'A job''s task: up to 200 characters of letters, digits, "_", ".", ":" and "-", not starting with a digit or a punctuation mark other than "_".';
COMMENT ON DOMAIN pgsched.job_args IS 'A job''s arguments: a JSON object.';
COMMENT ON DOMAIN pgsched.job_errors IS 'A job''s error history: a JSON array.';
COMMENT ON DOMAIN pgsched.job_attempt IS 'Attempts started: 0 or more.';
COMMENT ON DOMAIN pgsched.job_priority IS 'A job''s priority: -1000 to 1000, higher first.';
COMMENT ON DOMAIN pgsched.job_max_attempts IS 'Attempts allowed: 1 to 1000.';
COMMENT ON DOMAIN pgsched.job_progress IS 'Reported progress: a fraction from 0 to 1.';
COMMENT ON DOMAIN pgsched.job_timeout IS 'An attempt''s time limit: positive.';
COMMENT ON DOMAIN pgsched.concurrency_key IS 'A concurrency key: 1 to 200 characters.';

-- The views over pgsched.jobs (and those over them), in creation order, to make again after the type change.
CREATE TEMPORARY TABLE pgsched_0052_views ON COMMIT DROP AS
WITH RECURSIVE over_jobs(view_oid) AS (
    SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = 'pgsched.jobs'::regclass
       AND r.ev_class <> 'pgsched.jobs'::regclass
    UNION
    SELECT r.ev_class FROM over_jobs o
      JOIN pg_depend d ON d.refobjid = o.view_oid AND d.classid = 'pg_rewrite'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid
     WHERE r.ev_class <> o.view_oid
)
SELECT c.oid::bigint AS view_oid, format('%I.%I', n.nspname, c.relname) AS name,
       pg_get_viewdef(c.oid) AS definition, obj_description(c.oid, 'pg_class') AS note,
       (SELECT coalesce(array_agg(format('COMMENT ON COLUMN %I.%I.%I IS %L', n.nspname, c.relname, a.attname,
                                         col_description(c.oid, a.attnum))), '{}')
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND col_description(c.oid, a.attnum) IS NOT NULL)
           AS column_notes
  FROM (SELECT DISTINCT view_oid FROM over_jobs) v
  JOIN pg_class c ON c.oid = v.view_oid AND c.relkind = 'v'
  JOIN pg_namespace n ON n.oid = c.relnamespace;

DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT name FROM pgsched_0052_views ORDER BY view_oid DESC LOOP
        EXECUTE format('DROP VIEW IF EXISTS %s', v.name);
    END LOOP;
END $$;

-- Its WHEN clause reads queue, priority and max_attempts: made again below as it was.
DROP TRIGGER jobs_fill_defaults ON pgsched.jobs;

ALTER TABLE pgsched.jobs
    ALTER COLUMN queue TYPE pgsched.queue_name,
    ALTER COLUMN task TYPE pgsched.task_name,
    ALTER COLUMN args TYPE pgsched.job_args,
    ALTER COLUMN errors TYPE pgsched.job_errors,
    ALTER COLUMN attempt TYPE pgsched.job_attempt,
    ALTER COLUMN priority TYPE pgsched.job_priority,
    ALTER COLUMN max_attempts TYPE pgsched.job_max_attempts,
    ALTER COLUMN progress TYPE pgsched.job_progress,
    ALTER COLUMN timeout TYPE pgsched.job_timeout,
    ALTER COLUMN concurrency_key TYPE pgsched.concurrency_key;

ALTER DOMAIN pgsched.queue_name ADD CONSTRAINT jobs_queue_name_valid
    CHECK (length(VALUE) <= 63 AND VALUE ~ '^[a-z0-9][a-z0-9_.-]*$') NOT VALID;
ALTER DOMAIN pgsched.task_name ADD CONSTRAINT jobs_task_name_valid
    CHECK (length(VALUE) <= 200 AND VALUE ~ '^[A-Za-z_][A-Za-z0-9_.:-]*$') NOT VALID;
ALTER DOMAIN pgsched.job_args ADD CONSTRAINT jobs_args_is_object CHECK (jsonb_typeof(VALUE) = 'object') NOT VALID;
ALTER DOMAIN pgsched.job_errors ADD CONSTRAINT jobs_errors_is_array CHECK (jsonb_typeof(VALUE) = 'array') NOT VALID;
ALTER DOMAIN pgsched.job_attempt ADD CONSTRAINT jobs_attempt_not_negative CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN pgsched.job_priority ADD CONSTRAINT jobs_priority_range CHECK (VALUE >= -1000 AND VALUE <= 1000) NOT VALID;
ALTER DOMAIN pgsched.job_max_attempts ADD CONSTRAINT jobs_max_attempts_range
    CHECK (VALUE >= 1 AND VALUE <= 1000) NOT VALID;
ALTER DOMAIN pgsched.job_progress ADD CONSTRAINT jobs_progress_range CHECK (VALUE >= 0 AND VALUE <= 1) NOT VALID;
ALTER DOMAIN pgsched.job_timeout ADD CONSTRAINT jobs_timeout_positive CHECK (VALUE > interval '0') NOT VALID;
ALTER DOMAIN pgsched.concurrency_key ADD CONSTRAINT jobs_concurrency_key_length
    CHECK (length(VALUE) >= 1 AND length(VALUE) <= 200) NOT VALID;

ALTER TABLE pgsched.jobs
    DROP CONSTRAINT jobs_queue_name_valid,
    DROP CONSTRAINT jobs_task_name_valid,
    DROP CONSTRAINT jobs_args_is_object,
    DROP CONSTRAINT jobs_errors_is_array,
    DROP CONSTRAINT jobs_attempt_not_negative,
    DROP CONSTRAINT jobs_priority_range,
    DROP CONSTRAINT jobs_max_attempts_range,
    DROP CONSTRAINT jobs_progress_range,
    DROP CONSTRAINT jobs_timeout_positive,
    DROP CONSTRAINT jobs_concurrency_key_length;

CREATE TRIGGER jobs_fill_defaults BEFORE INSERT ON pgsched.jobs
    FOR EACH ROW WHEN (NEW.queue IS NULL OR NEW.priority IS NULL OR NEW.max_attempts IS NULL)
    EXECUTE FUNCTION pgsched.jobs_fill_defaults();
COMMENT ON TRIGGER jobs_fill_defaults ON pgsched.jobs IS 'Fills queue, priority and max_attempts left out of an insert from the task registry (pgsched.task_defaults).';

DO $$
DECLARE
    v record;
    note text;
BEGIN
    FOR v IN SELECT * FROM pgsched_0052_views ORDER BY view_oid LOOP
        EXECUTE format('CREATE VIEW %s AS %s', v.name, v.definition);
        IF v.note IS NOT NULL THEN
            EXECUTE format('COMMENT ON VIEW %s IS %L', v.name, v.note);
        END IF;
        FOREACH note IN ARRAY v.column_notes LOOP
            EXECUTE note;
        END LOOP;
    END LOOP;
END $$;

-- The functions that return these columns as their base types, as they were but for the casts (RETURN QUERY and a
-- recursive CTE's terms want the exact type).
CREATE OR REPLACE FUNCTION pgsched.claim_candidates(p_queue text, p_at timestamptz, p_limit integer)
    RETURNS TABLE(id bigint, priority smallint, run_at timestamptz, row_tid tid)
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_sort TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    SELECT j.id, j.priority::smallint, j.run_at, j.ctid FROM pgsched.jobs j
     WHERE j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue = p_queue AND j.run_at <= p_at
     ORDER BY j.priority DESC, j.run_at, j.id
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED;
END $$;

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
                RETURNING j.id, j.queue::text, j.task::text, j.args::jsonb, j.attempt::integer,
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

CREATE OR REPLACE FUNCTION pgsched.history_finished_between(p_since timestamptz, p_upto timestamptz)
    RETURNS TABLE(part oid, queue text, state pgsched.job_state, jobs bigint)
    LANGUAGE plpgsql STABLE
    SET enable_seqscan TO 'off'
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN QUERY
    SELECT j.tableoid, j.queue::text, j.state, count(*) FROM pgsched.jobs j
     WHERE j.state IN ('succeeded', 'dead', 'cancelled') AND j.finished_at > p_since AND j.finished_at <= p_upto
     GROUP BY j.tableoid, j.queue, j.state;
END $$;

CREATE OR REPLACE FUNCTION pgsched.queue_counts_list(p_cap integer, p_now timestamptz)
    RETURNS TABLE (queue text, due bigint, scheduled bigint, running bigint, succeeded bigint, dead bigint,
                   cancelled bigint, oldest_due_seconds double precision, paused boolean, concurrency_limit integer,
                   rate_limit integer, rate_period_seconds double precision, running_keys bigint,
                   counts_age_seconds double precision)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pgsched'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_sort TO 'off'
    SET jit TO 'off'
    AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
BEGIN
    RETURN QUERY
    WITH RECURSIVE queued_names(queue) AS (
        SELECT ''::text
        UNION ALL
        SELECT least((SELECT j.queue FROM pgsched.jobs j
                       WHERE j.state = 'queued' AND j.concurrency_key IS NULL AND j.queue > q.queue
                       ORDER BY j.queue LIMIT 1),
                     (SELECT j.queue FROM pgsched.jobs j
                       WHERE j.state = 'queued' AND j.concurrency_key IS NOT NULL AND j.queue > q.queue
                       ORDER BY j.queue LIMIT 1))::text
          FROM queued_names q
         WHERE q.queue IS NOT NULL
    ),
    running AS (
        SELECT j.queue, count(*) AS running, count(DISTINCT j.concurrency_key) AS running_keys
          FROM pgsched.jobs j WHERE j.state = 'running' GROUP BY j.queue
    ),
    finished AS (
        SELECT f.queue,
               count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE f.state = 'dead') AS dead,
               count(*) FILTER (WHERE f.state = 'cancelled') AS cancelled
          FROM unnest('{succeeded,dead,cancelled}'::pgsched.job_state[]) AS s(state)
         CROSS JOIN LATERAL (SELECT j.state, j.queue FROM pgsched.jobs j
                              WHERE j.state = s.state AND j.finished_at IS NOT NULL
                              ORDER BY j.finished_at DESC
                              LIMIT p_cap + 1) f
         GROUP BY f.queue
    ),
    capped AS (
        SELECT coalesce(sum(f.succeeded), 0) > p_cap AS succeeded,
               coalesce(sum(f.dead), 0) > p_cap AS dead,
               coalesce(sum(f.cancelled), 0) > p_cap AS cancelled
          FROM finished f
    ),
    names AS (
        SELECT qn.queue FROM queued_names qn WHERE qn.queue <> ''
        UNION SELECT r.queue FROM running r
        UNION SELECT f.queue FROM finished f
        UNION SELECT c.queue FROM pgsched.queue_counts c
        UNION SELECT s.name FROM pgsched.queues s
    ),
    live AS (
        SELECT n.queue, h.total > p_cap AS queued_capped, h.due, h.scheduled, h.oldest_due_at
          FROM names n
         CROSS JOIN LATERAL (
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE q.run_at <= v_now) AS due,
                   count(*) FILTER (WHERE q.run_at > v_now) AS scheduled,
                   min(q.run_at) FILTER (WHERE q.run_at <= v_now) AS oldest_due_at
              FROM ((SELECT j.run_at FROM pgsched.jobs j
                      WHERE j.queue = n.queue AND j.state = 'queued' AND j.concurrency_key IS NULL
                      ORDER BY j.queue, j.priority DESC, j.run_at, j.id
                      LIMIT p_cap + 1)
                    UNION ALL
                    (SELECT j.run_at FROM pgsched.jobs j
                      WHERE j.queue = n.queue AND j.state = 'queued' AND j.concurrency_key IS NOT NULL
                      ORDER BY j.queue, j.concurrency_key, j.priority DESC, j.run_at, j.id
                      LIMIT p_cap + 1)) q
         ) h
    )
    SELECT l.queue,
           CASE WHEN l.queued_capped THEN coalesce(c.due, l.due) ELSE l.due END,
           CASE WHEN l.queued_capped THEN coalesce(c.scheduled, l.scheduled) ELSE l.scheduled END,
           coalesce(r.running, 0),
           CASE WHEN k.succeeded THEN coalesce(c.succeeded, f.succeeded, 0) ELSE coalesce(f.succeeded, 0) END,
           CASE WHEN k.dead THEN coalesce(c.dead, f.dead, 0) ELSE coalesce(f.dead, 0) END,
           CASE WHEN k.cancelled THEN coalesce(c.cancelled, f.cancelled, 0) ELSE coalesce(f.cancelled, 0) END,
           extract(epoch FROM v_now - CASE WHEN l.queued_capped THEN coalesce(c.oldest_due_at, l.oldest_due_at)
                                           ELSE l.oldest_due_at END)::float8,
           coalesce(s.paused, false),
           s.concurrency,
           s.rate_limit,
           extract(epoch FROM s.rate_period)::float8,
           coalesce(r.running_keys, 0),
           CASE WHEN l.queued_capped OR k.succeeded OR k.dead OR k.cancelled
                THEN extract(epoch FROM v_now - c.counted_at)::float8
           END
      FROM live l
     CROSS JOIN capped k
      LEFT JOIN running r ON r.queue = l.queue
      LEFT JOIN finished f ON f.queue = l.queue
      LEFT JOIN pgsched.queue_counts c ON c.queue = l.queue
      LEFT JOIN pgsched.queues s ON s.name = l.queue
     ORDER BY l.queue;
END $$;
