-- 0023: dependents advance once per statement, not once per row. The row triggers of 0012/0020 ran one UPDATE of
-- the dependents per finished step; each such UPDATE of the wide jobs table costs ~0.4 ms to start (its indexes and
-- constraints), so a batch of 200 finished steps spent 80 ms releasing 200 dependents that one statement releases
-- in 10. Now one statement-level trigger sees every row a statement changed (transition tables also carry the rows
-- an UPDATE moved across partitions) and advances the dependents of all of them in one UPDATE per level and kind.

DROP TRIGGER jobs_advance_dependents ON pgsched.jobs;
DROP TRIGGER jobs_forget_dependencies ON pgsched.jobs;
DROP FUNCTION pgsched.jobs_advance_dependents();
DROP FUNCTION pgsched.jobs_forget_dependencies();
DROP FUNCTION pgsched.dependents_advance(bigint, pgsched.job_state, pgsched.job_state);

CREATE FUNCTION pgsched.dependents_advance(p_ids bigint[], p_new pgsched.job_state) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    todo bigint[] := p_ids;
    cause text := p_new::text;
    failed boolean := p_new IN ('dead', 'cancelled');
    ready bigint[];
    next_ids bigint[];
    revived bigint[];
BEGIN
    -- Our own updates below fire the statement trigger again: the loops here handle what they change.
    IF current_setting('pgsched.advancing', true) = 'on' THEN
        RETURN;
    END IF;
    PERFORM set_config('pgsched.advancing', 'on', true);
    IF p_new IN ('succeeded', 'dead', 'cancelled') THEN
        -- The jobs of todo ended: one level of the graph per pass counts down their waiting dependents (n edges
        -- from todo each), releases those at zero, cancels those with a "cancel" edge from a failed one.
        WHILE cardinality(todo) > 0 LOOP
            -- Locked in id order first: two statements that end steps with dependents in common wait for each
            -- other instead of deadlocking (the UPDATE below locks in its join's order).
            PERFORM 1 FROM pgsched.jobs j
              WHERE j.id IN (SELECT e.job_id FROM pgsched.job_dependencies e WHERE e.depends_on = ANY (todo))
                AND j.state = 'waiting'
              ORDER BY j.id
                FOR UPDATE OF j;
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
        -- The jobs of todo are back in play (a retry): their waiting dependents wait for them again, and the
        -- dependents they had cancelled wait again (recounted, in a statement of their own), level by level.
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
    RETURN;
END $$;
COMMENT ON FUNCTION pgsched.dependents_advance(bigint[], pgsched.job_state) IS 'Jobs with dependents went to state p_new, all from a live state when p_new is final (they ended) or all from a final state when it is live (a retry). Ended: count down their waiting dependents in one UPDATE per level under the dependents'' row locks, taken in id order (release at zero, cancel on a failed "cancel" edge, cascading level by level). Retried: their dependents wait for them again and those they cancelled are revived. In the transaction of that change; called once per statement and new state by the jobs_advance_dependents trigger.';

CREATE FUNCTION pgsched.jobs_advance_dependents() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    g record;
BEGIN
    -- Most statements change no job with dependents (every plain claim and finish): one pass over the old rows.
    IF current_setting('pgsched.advancing', true) = 'on' OR NOT EXISTS (SELECT 1 FROM old_jobs o WHERE o.has_dependents) THEN
        RETURN NULL;
    END IF;
    FOR g IN
        SELECT n.state, array_agg(n.id ORDER BY n.id) AS ids
          FROM old_jobs o JOIN new_jobs n ON n.id = o.id
         WHERE o.has_dependents AND n.state <> o.state
           AND (n.state IN ('succeeded', 'dead', 'cancelled')) <> (o.state IN ('succeeded', 'dead', 'cancelled'))
         GROUP BY n.state
         ORDER BY n.state
    LOOP
        PERFORM pgsched.dependents_advance(g.ids, g.state);
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_advance_dependents() IS 'Trigger AFTER UPDATE on jobs, once per statement: the jobs with dependents that this statement ended, or brought back from an end (a retry), advance their dependents (pgsched.dependents_advance), one call per new state. Its transition tables also hold the rows the statement moved across partitions.';

CREATE TRIGGER jobs_advance_dependents AFTER UPDATE ON pgsched.jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION pgsched.jobs_advance_dependents();
COMMENT ON TRIGGER jobs_advance_dependents ON pgsched.jobs IS 'Advances the dependents of the jobs with dependents that an UPDATE ended or retried, once per statement (pgsched.jobs_advance_dependents).';

CREATE FUNCTION pgsched.jobs_forget_dependencies() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    DELETE FROM pgsched.job_dependencies e
     USING old_jobs o
     WHERE e.job_id = o.id AND (o.workflow_id IS NOT NULL OR o.deps_left IS NOT NULL OR o.has_dependents);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_forget_dependencies() IS 'Trigger AFTER DELETE on jobs, once per statement: deleted workflow steps take their dependency edges along. A row an UPDATE moved across partitions is no delete (transition tables of DELETE do not hold it); a partition dropped by retention fires nothing, so the leader prunes edges left without their job (job_dependency_prune).';

CREATE TRIGGER jobs_forget_dependencies AFTER DELETE ON pgsched.jobs
    REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION pgsched.jobs_forget_dependencies();
COMMENT ON TRIGGER jobs_forget_dependencies ON pgsched.jobs IS 'Deletes the dependency edges of deleted workflow steps, once per statement (pgsched.jobs_forget_dependencies).';
