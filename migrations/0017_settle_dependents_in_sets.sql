-- 0017: workflows, one statement per ended dependency. 0012 locked each waiting dependent and then
-- recounted its dependencies (about 0.25 ms of database time per released job: a workflow of
-- two-step chains drained at a fifth to a third of the plain rate). Now a waiting job carries the
-- number of its dependencies that have not ended (deps_left): the dependency's trigger decrements
-- it with one UPDATE, whose row lock serializes two dependencies ending at once (the second waits,
-- then re-reads the row: exactly one of them takes it to zero). Releasing is part of that UPDATE,
-- unless the job wants its dependencies' results or has "failed" edges: a second statement (a
-- fresh snapshot, after the lock) settles those.

ALTER TABLE pgsched.jobs ADD COLUMN deps_left integer;
COMMENT ON COLUMN pgsched.jobs.deps_left IS 'A waiting job: how many of its dependencies have not ended yet (released at zero); NULL for a job without dependencies.';

-- Waiting jobs created under 0012: count what they still wait for.
UPDATE pgsched.jobs j
   SET deps_left = (SELECT count(*) FROM pgsched.job_dependencies e LEFT JOIN pgsched.jobs d ON d.id = e.depends_on
                     WHERE e.job_id = j.id AND d.state NOT IN ('succeeded', 'dead', 'cancelled'))
 WHERE j.workflow_id IS NOT NULL AND j.state = 'waiting';

DROP FUNCTION pgsched.job_settle(bigint);

CREATE FUNCTION pgsched.job_release(p_ids bigint[]) RETURNS bigint[]
    LANGUAGE plpgsql SET search_path = pg_catalog, pgsched AS $$
DECLARE
    cascade bigint[];
BEGIN
    WITH decided AS (
        SELECT t.id, x.arg,
               CASE WHEN x.wants_failure AND NOT x.saw_failure THEN 'no dependency failed' END AS reason
          FROM unnest(p_ids) AS t(id)
         CROSS JOIN LATERAL (
                SELECT max(e.results_arg) AS arg, bool_or(e.on_failure = 'failed') AS wants_failure,
                       coalesce(bool_or(e.on_failure = 'failed' AND d.state IN ('dead', 'cancelled')), false) AS saw_failure
                  FROM pgsched.job_dependencies e
                  LEFT JOIN pgsched.jobs d ON d.id = e.depends_on
                 WHERE e.job_id = t.id) x
    ), settled AS (
        UPDATE pgsched.jobs j
           SET state = CASE WHEN d.reason IS NULL THEN 'queued' ELSE 'cancelled' END::pgsched.job_state,
               finished_at = CASE WHEN d.reason IS NULL THEN NULL ELSE now() END,
               run_at = CASE WHEN d.reason IS NULL THEN greatest(j.run_at, now()) ELSE j.run_at END,
               args = CASE WHEN d.reason IS NULL AND d.arg IS NOT NULL THEN j.args || jsonb_build_object(d.arg, (
                          SELECT coalesce(jsonb_agg(CASE WHEN r.state = 'succeeded' THEN r.result END
                                                    ORDER BY e.position, e.depends_on), '[]'::jsonb)
                            FROM pgsched.job_dependencies e
                            LEFT JOIN pgsched.jobs r ON r.id = e.depends_on
                           WHERE e.job_id = j.id)) ELSE j.args END,
               errors = CASE WHEN d.reason IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(jsonb_build_object(
                   'at', now(), 'attempt', j.attempt, 'error', d.reason, 'kind', 'dependency_failed',
                   'dependency_id', NULL, 'traceback', NULL)) END
          FROM decided d
         WHERE j.id = d.id AND j.state = 'waiting' AND j.deps_left = 0
        RETURNING j.id, j.state, j.queue, j.has_dependents
    ), woken AS (
        SELECT count(pg_notify('pgsched_jobs', q.queue)) AS sent
          FROM (SELECT DISTINCT s.queue FROM settled s WHERE s.state = 'queued') q
         WHERE current_setting('pgsched.notify', true) IS DISTINCT FROM 'off'
           AND EXISTS (SELECT 1 FROM pgsched.waiting_workers w WHERE w.queue = q.queue)
    ), told AS (
        SELECT count(pg_notify('pgsched_done', s.id::text)) AS sent
          FROM settled s
         WHERE s.state = 'cancelled' AND EXISTS (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = s.id)
    )
    SELECT coalesce(array_agg(s.id ORDER BY s.id) FILTER (WHERE s.state = 'cancelled' AND s.has_dependents), '{}')
      INTO cascade
      FROM woken, told LEFT JOIN settled s ON true;
    RETURN cascade;
END $$;
COMMENT ON FUNCTION pgsched.job_release(bigint[]) IS 'Settle waiting jobs whose dependencies have all ended (deps_left = 0), locked by the caller, in one statement with a fresh snapshot: queued (with the dependencies'' results injected when asked; NOTIFY pgsched_jobs once per queue), or cancelled when it has "failed" edges and none of those failed. Returns the cancelled ones that have dependents.';

CREATE OR REPLACE FUNCTION pgsched.jobs_advance_dependents() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pgsched AS $$
DECLARE
    todo bigint[] := ARRAY[NEW.id];
    cause text := NEW.state::text;
    failed boolean := NEW.state IN ('dead', 'cancelled');
    ready bigint[];
    next_ids bigint[];
    revived bigint[];
    queues text[];
BEGIN
    -- Our own updates below fire this trigger again: the loops here handle them instead.
    IF current_setting('pgsched.advancing', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF NEW.state = 'succeeded' AND OLD.state NOT IN ('succeeded', 'dead', 'cancelled') THEN
        -- The hot path (a step succeeded): one statement counts down its waiting dependents, each
        -- under its row lock, and releases those at zero; nothing it does fires this trigger again.
        WITH hit AS (
            UPDATE pgsched.jobs j
               SET deps_left = j.deps_left - 1,
                   state = CASE WHEN j.deps_left = 1 AND e.results_arg IS NULL AND e.on_failure <> 'failed'
                                THEN 'queued' ELSE 'waiting' END::pgsched.job_state,
                   run_at = CASE WHEN j.deps_left = 1 AND e.results_arg IS NULL AND e.on_failure <> 'failed'
                                 THEN greatest(j.run_at, now()) ELSE j.run_at END
              FROM pgsched.job_dependencies e
             WHERE e.depends_on = NEW.id AND j.id = e.job_id AND j.state = 'waiting'
            RETURNING j.id, j.state, j.deps_left, j.queue
        )
        SELECT array_agg(h.id ORDER BY h.id) FILTER (WHERE h.state = 'waiting' AND h.deps_left = 0),
               array_agg(DISTINCT h.queue) FILTER (WHERE h.state = 'queued')
          INTO ready, queues
          FROM hit h;
        IF queues IS NOT NULL AND current_setting('pgsched.notify', true) IS DISTINCT FROM 'off' THEN
            PERFORM pg_notify('pgsched_jobs', q.name) FROM unnest(queues) AS q(name)
              WHERE EXISTS (SELECT 1 FROM pgsched.waiting_workers w WHERE w.queue = q.name);
        END IF;
        IF ready IS NULL THEN
            RETURN NULL;
        END IF;
        -- Some want results or have "failed" edges: settled apart, which may cancel (and cascade).
        PERFORM set_config('pgsched.advancing', 'on', true);
        todo := pgsched.job_release(ready);
        failed := true;
        cause := 'cancelled';
    ELSE
        PERFORM set_config('pgsched.advancing', 'on', true);
    END IF;
    IF NEW.state IN ('succeeded', 'dead', 'cancelled') AND OLD.state IN ('succeeded', 'dead', 'cancelled') THEN
        NULL;  -- from one end to another (a hand-made UPDATE): its dependents counted it already
    ELSIF NEW.state IN ('succeeded', 'dead', 'cancelled') THEN
        -- One level of the graph per pass: the jobs ended in todo count down their waiting dependents.
        WHILE cardinality(todo) > 0 LOOP
            WITH edge AS (
                SELECT e.job_id, count(*)::integer AS n, min(e.depends_on) FILTER (WHERE e.on_failure = 'cancel') AS blocker,
                       bool_or(e.on_failure = 'failed') OR max(e.results_arg) IS NOT NULL AS settle_apart
                  FROM pgsched.job_dependencies e
                 WHERE e.depends_on = ANY (todo)
                 GROUP BY e.job_id
            ), hit AS (
                UPDATE pgsched.jobs j
                   SET deps_left = j.deps_left - e.n,
                       state = CASE WHEN failed AND e.blocker IS NOT NULL THEN 'cancelled'
                                    WHEN j.deps_left = e.n AND NOT e.settle_apart THEN 'queued'
                                    ELSE 'waiting' END::pgsched.job_state,
                       finished_at = CASE WHEN failed AND e.blocker IS NOT NULL THEN now() END,
                       run_at = CASE WHEN NOT (failed AND e.blocker IS NOT NULL) AND j.deps_left = e.n AND NOT e.settle_apart
                                     THEN greatest(j.run_at, now()) ELSE j.run_at END,
                       errors = CASE WHEN failed AND e.blocker IS NOT NULL
                                     THEN j.errors || jsonb_build_array(jsonb_build_object(
                                          'at', now(), 'attempt', j.attempt,
                                          'error', format('dependency %s ended %s', e.blocker, cause),
                                          'kind', 'dependency_failed', 'dependency_id', e.blocker, 'traceback', NULL))
                                     ELSE j.errors END
                  FROM edge e
                 WHERE j.id = e.job_id AND j.state = 'waiting'
                RETURNING j.id, j.state, j.deps_left, j.queue, j.has_dependents
            ), woken AS (
                SELECT count(pg_notify('pgsched_jobs', q.queue)) AS sent
                  FROM (SELECT DISTINCT h.queue FROM hit h WHERE h.state = 'queued') q
                 WHERE current_setting('pgsched.notify', true) IS DISTINCT FROM 'off'
                   AND EXISTS (SELECT 1 FROM pgsched.waiting_workers w WHERE w.queue = q.queue)
            ), told AS (
                SELECT count(pg_notify('pgsched_done', h.id::text)) AS sent
                  FROM hit h
                 WHERE h.state = 'cancelled' AND EXISTS (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = h.id)
            )
            SELECT array_agg(h.id ORDER BY h.id) FILTER (WHERE h.state = 'waiting' AND h.deps_left = 0),
                   coalesce(array_agg(h.id) FILTER (WHERE h.state = 'cancelled' AND h.has_dependents), '{}')
              INTO ready, next_ids
              FROM woken, told LEFT JOIN hit h ON true;
            IF ready IS NOT NULL THEN
                next_ids := next_ids || pgsched.job_release(ready);
            END IF;
            todo := next_ids;
            failed := true;  -- what cascades from here was cancelled
            cause := 'cancelled';
        END LOOP;
    ELSE
        -- NEW is back in play (a retry): its waiting dependents wait for it again, and the dependents
        -- it had cancelled wait again (recounted, in a statement of their own), level by level.
        WHILE cardinality(todo) > 0 LOOP
            UPDATE pgsched.jobs j SET deps_left = j.deps_left + e.n
              FROM (SELECT e.job_id, count(*)::integer AS n FROM pgsched.job_dependencies e
                     WHERE e.depends_on = ANY (todo) GROUP BY e.job_id) e
             WHERE j.id = e.job_id AND j.state = 'waiting';
            WITH back AS (
                UPDATE pgsched.jobs j SET state = 'waiting', finished_at = NULL
                  FROM pgsched.job_dependencies e
                 WHERE e.depends_on = ANY (todo) AND j.id = e.job_id AND j.state = 'cancelled'
                   AND j.errors -> -1 ->> 'kind' = 'dependency_failed'
                   AND (j.errors -> -1 ->> 'dependency_id')::bigint = e.depends_on
                RETURNING j.id, j.has_dependents
            )
            SELECT coalesce(array_agg(b.id), '{}'), coalesce(array_agg(b.id) FILTER (WHERE b.has_dependents), '{}')
              INTO revived, next_ids FROM back b;
            UPDATE pgsched.jobs j
               SET deps_left = (SELECT count(*) FROM pgsched.job_dependencies e LEFT JOIN pgsched.jobs d ON d.id = e.depends_on
                                 WHERE e.job_id = j.id AND d.state NOT IN ('succeeded', 'dead', 'cancelled'))
             WHERE j.id = ANY (revived);
            todo := next_ids;
        END LOOP;
    END IF;
    PERFORM set_config('pgsched.advancing', 'off', true);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_advance_dependents() IS 'Trigger: a job with dependents ended (count down its waiting dependents in one UPDATE under their row locks: release at zero, cancel on a failed "cancel" edge, cascading level by level) or left dead/cancelled/succeeded (a retry: its dependents wait for it again, and those it cancelled are revived), in the transaction of that change.';

CREATE OR REPLACE FUNCTION pgsched.workflow_add(
    workflow_id bigint, task text, args jsonb DEFAULT '{}', depends_on bigint[] DEFAULT '{}',
    on_failure text DEFAULT 'cancel', queue text DEFAULT 'default', priority integer DEFAULT 0,
    max_attempts integer DEFAULT NULL, timeout interval DEFAULT NULL, results_arg text DEFAULT NULL
) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pgsched AS $$
#variable_conflict use_variable
DECLARE
    new_id bigint;
    wf bigint := workflow_id;
    found_deps integer;
    open_deps integer;
    blocker bigint;
    blocker_state text;
BEGIN
    IF wf IS NULL THEN
        wf := pgsched.workflow_create('', 'after');
    ELSIF NOT EXISTS (SELECT 1 FROM pgsched.workflows w WHERE w.id = wf) THEN
        RAISE EXCEPTION 'pgsched.workflow_add: workflow % does not exist', wf USING ERRCODE = 'no_data_found';
    END IF;
    IF on_failure IS NULL OR on_failure NOT IN ('cancel', 'run', 'failed') THEN
        RAISE EXCEPTION 'pgsched.workflow_add: on_failure must be cancel, run or failed, got %', coalesce(quote_literal(on_failure), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    depends_on := ARRAY(SELECT t.u FROM unnest(coalesce(depends_on, '{}')) WITH ORDINALITY AS t(u, n)
                         WHERE t.u IS NOT NULL GROUP BY t.u ORDER BY min(t.n));  -- first mention wins
    new_id := pgsched.enqueue(task, args, queue => queue, priority => priority, max_attempts => max_attempts,
                              timeout => timeout, run_at => now());
    -- Lock the dependencies (none can end unseen while the edges go in), mark them, read their states.
    WITH marked AS (
        UPDATE pgsched.jobs j SET has_dependents = true WHERE j.id = ANY (depends_on) RETURNING j.id, j.state
    )
    SELECT count(*), count(*) FILTER (WHERE m.state NOT IN ('succeeded', 'dead', 'cancelled')),
           min(m.id) FILTER (WHERE m.state IN ('dead', 'cancelled'))
      INTO found_deps, open_deps, blocker FROM marked m;
    IF found_deps <> cardinality(depends_on) THEN
        RAISE EXCEPTION 'pgsched.workflow_add: dependency % does not exist',
            (SELECT min(u) FROM unnest(depends_on) AS u WHERE NOT EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.id = u))
            USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO pgsched.job_dependencies (job_id, depends_on, position, on_failure, results_arg)
    SELECT new_id, d.id, d.n, on_failure, results_arg FROM unnest(depends_on) WITH ORDINALITY AS d(id, n);
    IF cardinality(depends_on) = 0 THEN
        UPDATE pgsched.jobs j SET workflow_id = wf WHERE j.id = new_id;
    ELSIF blocker IS NOT NULL AND on_failure = 'cancel' THEN  -- a dependency already failed
        SELECT d.state::text INTO blocker_state FROM pgsched.jobs d WHERE d.id = blocker;
        UPDATE pgsched.jobs j
           SET workflow_id = wf, state = 'cancelled', finished_at = now(), deps_left = open_deps,
               errors = jsonb_build_array(jsonb_build_object(
                   'at', now(), 'attempt', 0, 'error', format('dependency %s ended %s', blocker, blocker_state),
                   'kind', 'dependency_failed', 'dependency_id', blocker, 'traceback', NULL))
         WHERE j.id = new_id;
    ELSE
        UPDATE pgsched.jobs j SET workflow_id = wf, state = 'waiting', deps_left = open_deps WHERE j.id = new_id;
        IF open_deps = 0 THEN
            PERFORM pgsched.job_release(ARRAY[new_id]);  -- every dependency had ended already
        END IF;
    END IF;
    RETURN new_id;
END $$;
