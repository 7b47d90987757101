-- 0012: workflows. A job can wait for other jobs: it is inserted in the new state `waiting`
-- (claims only ever read `queued`, so they never see it) with one edge per dependency in
-- pgsched.job_dependencies. The dependency's own UPDATE of state advances its dependents, in the
-- same transaction, through one row trigger whose WHEN clause reads a flag of the old row
-- (has_dependents): every way a job ends (worker finish, cancel, reaper, SQL) is covered, and a
-- job without dependents pays one boolean test.
--
-- ALTER TYPE ... ADD VALUE cannot be used by the transaction that adds it (the migrator runs one
-- transaction per file), so nothing below names 'waiting' as an enum constant outside PL/pgSQL
-- bodies, which are planned when they first run; the views compare state::text.

ALTER TYPE pgsched.job_state ADD VALUE IF NOT EXISTS 'waiting' BEFORE 'queued';
COMMENT ON TYPE pgsched.job_state IS 'Life of a job: [waiting (for its dependencies) ->] queued (waiting, delayed or waiting to retry) -> running -> succeeded | dead | cancelled.';
COMMENT ON COLUMN pgsched.jobs.state IS 'waiting (for dependencies; never claimed), queued, running, succeeded, dead (out of attempts) or cancelled.';

CREATE TABLE pgsched.workflows (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    kind        text NOT NULL DEFAULT 'dag',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflows_kind_valid CHECK (kind IN ('chain', 'group', 'dag', 'batch', 'after')),
    CONSTRAINT workflows_name_length CHECK (length(name) <= 200)
);
COMMENT ON TABLE pgsched.workflows IS 'Groups of jobs linked by dependencies (pgsched.job_dependencies); removed by the leader once every step is gone.';
COMMENT ON COLUMN pgsched.workflows.id IS 'Workflow id; its steps carry it in jobs.workflow_id.';
COMMENT ON COLUMN pgsched.workflows.name IS 'Label chosen by the creator (may be empty).';
COMMENT ON COLUMN pgsched.workflows.kind IS 'Shape it was built as: chain, group, dag, batch, or after (a job enqueued after other jobs).';
COMMENT ON COLUMN pgsched.workflows.created_at IS 'When the workflow was created.';

ALTER TABLE pgsched.jobs
    ADD COLUMN workflow_id bigint,
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN pgsched.jobs.workflow_id IS 'pgsched.workflows.id of the workflow the job is a step of; NULL for a plain job.';
COMMENT ON COLUMN pgsched.jobs.has_dependents IS 'Some job waits for this one: only then does a change of state run pgsched.jobs_advance_dependents.';
CREATE INDEX jobs_workflow_idx ON pgsched.jobs (workflow_id, id) WHERE workflow_id IS NOT NULL;

CREATE TABLE pgsched.job_dependencies (
    job_id       bigint NOT NULL,
    depends_on   bigint NOT NULL,
    position     integer NOT NULL DEFAULT 0,
    on_failure   text NOT NULL DEFAULT 'cancel',
    results_arg  text,
    PRIMARY KEY (job_id, depends_on),
    CONSTRAINT job_dependencies_not_self CHECK (job_id <> depends_on),
    CONSTRAINT job_dependencies_policy_valid CHECK (on_failure IN ('cancel', 'run', 'failed')),
    CONSTRAINT job_dependencies_results_arg_valid CHECK (results_arg IS NULL OR results_arg ~ '^[A-Za-z_][A-Za-z0-9_]{0,99}$')
);
CREATE INDEX job_dependencies_depends_on_idx ON pgsched.job_dependencies (depends_on);
COMMENT ON TABLE pgsched.job_dependencies IS 'Edges of workflows: job_id waits for depends_on. Deleted with their dependent job.';
COMMENT ON COLUMN pgsched.job_dependencies.job_id IS 'The waiting job (the dependent).';
COMMENT ON COLUMN pgsched.job_dependencies.depends_on IS 'The job it waits for; a dependency that no longer exists (pruned) counts as succeeded.';
COMMENT ON COLUMN pgsched.job_dependencies.position IS 'Order of this dependency among the dependent''s (the order of injected results).';
COMMENT ON COLUMN pgsched.job_dependencies.on_failure IS 'When the dependency ends dead or cancelled: cancel the dependent (default), run it anyway, or failed: the dependent runs only if at least one of its "failed" dependencies failed (an on_failure callback).';
COMMENT ON COLUMN pgsched.job_dependencies.results_arg IS 'When set (the same on every edge of a job): on release, the dependent''s args get this key holding the results of its dependencies in position order (null for one that did not succeed).';

-- Settle one waiting job, locked by the caller: release it (queued), cancel it, or leave it waiting.
CREATE FUNCTION pgsched.job_settle(p_id bigint) RETURNS pgsched.job_state
    LANGUAGE plpgsql SET search_path = pg_catalog, pgsched AS $$
DECLARE
    pending integer;
    blocker bigint;
    blocker_state text;
    wants_failure boolean;
    saw_failure boolean;
    arg text;
    reason text;
    settled pgsched.job_state;
BEGIN
    SELECT count(*) FILTER (WHERE d.state NOT IN ('succeeded', 'dead', 'cancelled')),
           min(e.depends_on) FILTER (WHERE e.on_failure = 'cancel' AND d.state IN ('dead', 'cancelled')),
           coalesce(bool_or(e.on_failure = 'failed'), false),
           coalesce(bool_or(e.on_failure = 'failed' AND d.state IN ('dead', 'cancelled')), false),
           max(e.results_arg)
      INTO pending, blocker, wants_failure, saw_failure, arg
      FROM pgsched.job_dependencies e
      LEFT JOIN pgsched.jobs d ON d.id = e.depends_on
     WHERE e.job_id = p_id;
    IF blocker IS NOT NULL THEN
        SELECT d.state::text INTO blocker_state FROM pgsched.jobs d WHERE d.id = blocker;
        reason := format('dependency %s ended %s', blocker, blocker_state);
    ELSIF pending > 0 THEN
        RETURN 'waiting';
    ELSIF wants_failure AND NOT saw_failure THEN
        reason := 'no dependency failed';
    END IF;
    IF reason IS NOT NULL THEN
        UPDATE pgsched.jobs j
           SET state = 'cancelled', finished_at = now(),
               errors = j.errors || jsonb_build_array(jsonb_build_object(
                   'at', now(), 'attempt', j.attempt, 'error', reason, 'kind', 'dependency_failed',
                   'dependency_id', blocker, 'traceback', NULL))
         WHERE j.id = p_id
        RETURNING j.state INTO settled;
    ELSE
        UPDATE pgsched.jobs j
           SET state = 'queued', run_at = greatest(j.run_at, now()),
               args = CASE WHEN arg IS NULL THEN j.args ELSE j.args || jsonb_build_object(arg, (
                          SELECT coalesce(jsonb_agg(CASE WHEN d.state = 'succeeded' THEN d.result END
                                                    ORDER BY e.position, e.depends_on), '[]'::jsonb)
                            FROM pgsched.job_dependencies e
                            LEFT JOIN pgsched.jobs d ON d.id = e.depends_on
                           WHERE e.job_id = p_id)) END
         WHERE j.id = p_id
        RETURNING j.state INTO settled;
        IF current_setting('pgsched.notify', true) IS DISTINCT FROM 'off'
           AND EXISTS (SELECT 1 FROM pgsched.waiting_workers w
                        WHERE w.queue = (SELECT j.queue FROM pgsched.jobs j WHERE j.id = p_id)) THEN
            PERFORM pg_notify('pgsched_jobs', (SELECT j.queue FROM pgsched.jobs j WHERE j.id = p_id));
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = p_id) AND settled = 'cancelled' THEN
        PERFORM pg_notify('pgsched_done', p_id::text);
    END IF;
    RETURN settled;
END $$;
COMMENT ON FUNCTION pgsched.job_settle(bigint) IS 'Decide a waiting job the caller has locked: queued when every dependency has ended and none blocks it (injecting results when asked), cancelled when a dependency with policy cancel failed (or, with "failed" edges, when none failed), else still waiting.';

-- The one mechanism behind every transition: a dependency ended (settle its waiting dependents) or
-- came back from dead/cancelled (revive the dependents it had cancelled). Iterative, one level of
-- the graph at a time, each level locked in id order, so a long chain never nests triggers.
CREATE FUNCTION pgsched.jobs_advance_dependents() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pgsched AS $$
DECLARE
    todo bigint[] := ARRAY[NEW.id];
    next_ids bigint[];
    d record;
    reviving boolean := NEW.state NOT IN ('succeeded', 'dead', 'cancelled');
BEGIN
    -- Our own updates below fire this trigger again: the loop here handles them instead.
    IF current_setting('pgsched.advancing', true) = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('pgsched.advancing', 'on', true);
    WHILE cardinality(todo) > 0 LOOP
        next_ids := '{}';
        IF reviving THEN
            FOR d IN SELECT j.id, j.has_dependents FROM pgsched.jobs j
                      WHERE j.id IN (SELECT e.job_id FROM pgsched.job_dependencies e WHERE e.depends_on = ANY (todo))
                        AND j.state = 'cancelled' AND j.errors -> -1 ->> 'kind' = 'dependency_failed'
                      ORDER BY j.id FOR UPDATE OF j LOOP
                UPDATE pgsched.jobs j SET state = 'waiting', finished_at = NULL WHERE j.id = d.id;
                IF d.has_dependents THEN
                    next_ids := next_ids || d.id;
                END IF;
            END LOOP;
        ELSE
            FOR d IN SELECT j.id, j.has_dependents FROM pgsched.jobs j
                      WHERE j.id IN (SELECT e.job_id FROM pgsched.job_dependencies e WHERE e.depends_on = ANY (todo))
                        AND j.state = 'waiting'
                      ORDER BY j.id FOR UPDATE OF j LOOP
                IF pgsched.job_settle(d.id) = 'cancelled' AND d.has_dependents THEN
                    next_ids := next_ids || d.id;
                END IF;
            END LOOP;
        END IF;
        todo := next_ids;
    END LOOP;
    PERFORM set_config('pgsched.advancing', 'off', true);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_advance_dependents() IS 'Trigger: a job with dependents ended (settle each waiting dependent under its row lock, cascading cancellations) or left dead/cancelled (a retry: dependents it had cancelled wait again), in the transaction of that change.';

CREATE TRIGGER jobs_advance_dependents
    AFTER UPDATE OF state ON pgsched.jobs
    FOR EACH ROW
    WHEN (OLD.has_dependents AND NEW.state IS DISTINCT FROM OLD.state
          AND (NEW.state IN ('succeeded', 'dead', 'cancelled') OR OLD.state IN ('succeeded', 'dead', 'cancelled')))
    EXECUTE FUNCTION pgsched.jobs_advance_dependents();

CREATE FUNCTION pgsched.jobs_forget_dependencies() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pgsched AS $$
BEGIN
    DELETE FROM pgsched.job_dependencies e WHERE e.job_id = OLD.id;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_forget_dependencies() IS 'Trigger: a deleted workflow step takes its dependency edges along.';
CREATE TRIGGER jobs_forget_dependencies
    AFTER DELETE ON pgsched.jobs
    FOR EACH ROW WHEN (OLD.workflow_id IS NOT NULL)
    EXECUTE FUNCTION pgsched.jobs_forget_dependencies();

CREATE FUNCTION pgsched.workflow_create(name text DEFAULT '', kind text DEFAULT 'dag') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pgsched AS $$
    INSERT INTO pgsched.workflows (name, kind) VALUES (coalesce(workflow_create.name, ''), workflow_create.kind) RETURNING id
$$;
COMMENT ON FUNCTION pgsched.workflow_create(text, text) IS 'Create an empty workflow and return its id; add steps with pgsched.workflow_add in the same or later transactions.';

CREATE FUNCTION pgsched.workflow_add(
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
    -- Lock the dependencies (so none ends unseen while the edges go in) and mark them.
    UPDATE pgsched.jobs j SET has_dependents = true WHERE j.id = ANY (depends_on);
    GET DIAGNOSTICS found_deps = ROW_COUNT;
    IF found_deps <> cardinality(depends_on) THEN
        RAISE EXCEPTION 'pgsched.workflow_add: dependency % does not exist',
            (SELECT min(u) FROM unnest(depends_on) AS u WHERE NOT EXISTS (SELECT 1 FROM pgsched.jobs j WHERE j.id = u))
            USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO pgsched.job_dependencies (job_id, depends_on, position, on_failure, results_arg)
    SELECT new_id, d.id, d.n, on_failure, results_arg FROM unnest(depends_on) WITH ORDINALITY AS d(id, n);
    UPDATE pgsched.jobs j SET workflow_id = wf,
                              state = CASE WHEN cardinality(depends_on) > 0 THEN 'waiting' ELSE 'queued' END::pgsched.job_state
     WHERE j.id = new_id;
    IF cardinality(depends_on) > 0 THEN
        PERFORM pgsched.job_settle(new_id);  -- its dependencies may have ended already
    END IF;
    RETURN new_id;
END $$;
COMMENT ON FUNCTION pgsched.workflow_add(bigint, text, jsonb, bigint[], text, text, integer, integer, interval, text) IS 'Add a step to a workflow (NULL: a new workflow of kind after) that waits for the jobs depends_on (policy on_failure: cancel, run or failed) and return its id; with no dependency it is queued at once. results_arg names the args key that receives the dependencies'' results.';

CREATE FUNCTION pgsched.workflow_cancel(workflow_id bigint) RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog, pgsched AS $$
#variable_conflict use_variable
DECLARE
    n integer;
    s record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgsched.workflows w WHERE w.id = workflow_id) THEN
        RAISE EXCEPTION 'pgsched.workflow_cancel: workflow % does not exist', workflow_id USING ERRCODE = 'no_data_found';
    END IF;
    -- One statement for every step not started: their own triggers then find their dependents
    -- already cancelled, so nothing cascades twice.
    WITH stopped AS (
        UPDATE pgsched.jobs j
           SET state = 'cancelled', finished_at = now(),
               errors = j.errors || jsonb_build_array(jsonb_build_object(
                   'at', now(), 'attempt', j.attempt, 'error', 'workflow cancelled', 'kind', 'workflow_cancelled',
                   'traceback', NULL))
         WHERE j.workflow_id = workflow_id AND j.state IN ('waiting', 'queued')
        RETURNING j.id
    ), told AS (
        SELECT count(pg_notify('pgsched_done', stopped.id::text)) AS sent FROM stopped
         WHERE EXISTS (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = stopped.id)
    )
    SELECT count(*) INTO n FROM stopped, told;
    FOR s IN SELECT j.id FROM pgsched.jobs j WHERE j.workflow_id = workflow_id AND j.state = 'running' ORDER BY j.id LOOP
        PERFORM pgsched.cancel(s.id);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION pgsched.workflow_cancel(bigint) IS 'Cancel every unfinished step of a workflow (running ones are signalled, see pgsched.cancel); returns how many steps it cancelled or signalled.';

-- pgsched.cancel as of 0005, and a waiting job is cancelled like a queued one.
CREATE OR REPLACE FUNCTION pgsched.cancel(job_id bigint) RETURNS pgsched.job_state
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    current pgsched.job_state;
BEGIN
    SELECT j.state INTO current FROM pgsched.jobs j WHERE j.id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgsched.cancel: job % does not exist', job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF current IN ('queued', 'waiting') THEN
        UPDATE pgsched.jobs SET state = 'cancelled', finished_at = now() WHERE id = job_id;
        IF EXISTS (SELECT 1 FROM pgsched.result_waiters w WHERE w.job_id = cancel.job_id) THEN
            PERFORM pg_notify('pgsched_done', job_id::text);
        END IF;
        RETURN 'cancelled';
    ELSIF current = 'running' THEN
        UPDATE pgsched.jobs SET cancel_requested_at = coalesce(cancel_requested_at, now()) WHERE id = job_id;
        PERFORM pg_notify('pgsched_cancel', job_id::text);
        RETURN 'running';
    ELSE
        RAISE EXCEPTION 'pgsched.cancel: job % already finished (%)', job_id, current USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END $$;
COMMENT ON FUNCTION pgsched.cancel(bigint) IS 'Cancel a job: a queued or waiting job at once (NOTIFY pgsched_done when a result waiter waits on it); a running job is signalled (NOTIFY pgsched_cancel) and its worker stops it. Returns the state after the call.';

CREATE VIEW pgsched.workflow_steps AS
SELECT j.workflow_id, j.id, j.task, j.queue, j.priority, j.state, j.attempt, j.max_attempts,
       coalesce((SELECT array_agg(e.depends_on ORDER BY e.position, e.depends_on)
                   FROM pgsched.job_dependencies e WHERE e.job_id = j.id), '{}') AS depends_on,
       j.created_at, j.started_at, j.finished_at,
       CASE WHEN j.started_at IS NOT NULL AND j.finished_at IS NOT NULL THEN j.finished_at - j.started_at END AS duration,
       j.errors -> -1 ->> 'error' AS last_error, j.result
  FROM pgsched.jobs j
 WHERE j.workflow_id IS NOT NULL;
COMMENT ON VIEW pgsched.workflow_steps IS 'Every step of every workflow with its state and its dependencies: SELECT * FROM pgsched.workflow_steps WHERE workflow_id = 1 ORDER BY id.';
COMMENT ON COLUMN pgsched.workflow_steps.workflow_id IS 'Workflow id.';
COMMENT ON COLUMN pgsched.workflow_steps.id IS 'Job id of the step.';
COMMENT ON COLUMN pgsched.workflow_steps.task IS 'Task name.';
COMMENT ON COLUMN pgsched.workflow_steps.queue IS 'Queue name.';
COMMENT ON COLUMN pgsched.workflow_steps.priority IS 'Priority.';
COMMENT ON COLUMN pgsched.workflow_steps.state IS 'State of the step (waiting until its dependencies allow it to run).';
COMMENT ON COLUMN pgsched.workflow_steps.attempt IS 'Attempts started.';
COMMENT ON COLUMN pgsched.workflow_steps.max_attempts IS 'Attempts allowed.';
COMMENT ON COLUMN pgsched.workflow_steps.depends_on IS 'Ids of the jobs this step waits for, in position order.';
COMMENT ON COLUMN pgsched.workflow_steps.created_at IS 'When the step was created.';
COMMENT ON COLUMN pgsched.workflow_steps.started_at IS 'Start of the current or last attempt.';
COMMENT ON COLUMN pgsched.workflow_steps.finished_at IS 'When the step ended.';
COMMENT ON COLUMN pgsched.workflow_steps.duration IS 'Run time of the last attempt, once ended.';
COMMENT ON COLUMN pgsched.workflow_steps.last_error IS 'Error of the last failed attempt (or why it was cancelled).';
COMMENT ON COLUMN pgsched.workflow_steps.result IS 'Result, when it succeeded.';

CREATE VIEW pgsched.workflow_status AS
SELECT w.id, w.name, w.kind, w.created_at,
       count(j.id)::integer AS steps,
       (count(j.id) FILTER (WHERE j.state::text = 'waiting'))::integer AS waiting,
       (count(j.id) FILTER (WHERE j.state::text = 'queued'))::integer AS queued,
       (count(j.id) FILTER (WHERE j.state::text = 'running'))::integer AS running,
       (count(j.id) FILTER (WHERE j.state::text = 'succeeded'))::integer AS succeeded,
       (count(j.id) FILTER (WHERE j.state::text = 'dead'))::integer AS dead,
       (count(j.id) FILTER (WHERE j.state::text = 'cancelled'))::integer AS cancelled,
       CASE WHEN count(j.id) FILTER (WHERE j.state::text IN ('waiting', 'queued', 'running')) > 0 THEN 'running'
            WHEN count(j.id) FILTER (WHERE j.state::text = 'dead') > 0 THEN 'failed'
            WHEN count(j.id) FILTER (WHERE j.state::text = 'cancelled' AND coalesce(j.errors -> -1 ->> 'kind', '') <> 'dependency_failed') > 0
                 AND count(j.id) FILTER (WHERE j.state::text = 'succeeded') = 0 THEN 'cancelled'
            WHEN count(j.id) = 0 THEN 'empty'
            ELSE 'finished' END AS state,
       max(j.finished_at) FILTER (WHERE NOT j.state::text IN ('waiting', 'queued', 'running')) AS finished_at
  FROM pgsched.workflows w
  LEFT JOIN pgsched.jobs j ON j.workflow_id = w.id
 GROUP BY w.id;
COMMENT ON VIEW pgsched.workflow_status IS 'One row per workflow: steps per state (a batch''s progress) and an overall state: running (a step has not ended), failed (a step is dead), cancelled, finished, or empty.';
COMMENT ON COLUMN pgsched.workflow_status.id IS 'Workflow id.';
COMMENT ON COLUMN pgsched.workflow_status.name IS 'Workflow name.';
COMMENT ON COLUMN pgsched.workflow_status.kind IS 'chain, group, dag, batch or after.';
COMMENT ON COLUMN pgsched.workflow_status.created_at IS 'When it was created.';
COMMENT ON COLUMN pgsched.workflow_status.steps IS 'Steps that still exist.';
COMMENT ON COLUMN pgsched.workflow_status.waiting IS 'Steps waiting for dependencies.';
COMMENT ON COLUMN pgsched.workflow_status.queued IS 'Steps queued.';
COMMENT ON COLUMN pgsched.workflow_status.running IS 'Steps running.';
COMMENT ON COLUMN pgsched.workflow_status.succeeded IS 'Steps succeeded.';
COMMENT ON COLUMN pgsched.workflow_status.dead IS 'Steps dead.';
COMMENT ON COLUMN pgsched.workflow_status.cancelled IS 'Steps cancelled.';
COMMENT ON COLUMN pgsched.workflow_status.state IS 'running, failed, cancelled, finished or empty.';
COMMENT ON COLUMN pgsched.workflow_status.finished_at IS 'Last time a step ended.';

CREATE VIEW pgsched.dependency_results AS
SELECT e.job_id, e.depends_on, e.position, e.on_failure, d.state, d.result,
       d.errors -> -1 ->> 'error' AS last_error
  FROM pgsched.job_dependencies e
  LEFT JOIN pgsched.jobs d ON d.id = e.depends_on;
COMMENT ON VIEW pgsched.dependency_results IS 'What each dependent job can read of its dependencies: SELECT result FROM pgsched.dependency_results WHERE job_id = $1 ORDER BY position.';
COMMENT ON COLUMN pgsched.dependency_results.job_id IS 'The dependent job.';
COMMENT ON COLUMN pgsched.dependency_results.depends_on IS 'One of its dependencies.';
COMMENT ON COLUMN pgsched.dependency_results.position IS 'Order among the dependent''s dependencies.';
COMMENT ON COLUMN pgsched.dependency_results.on_failure IS 'Policy of the edge (cancel, run, failed).';
COMMENT ON COLUMN pgsched.dependency_results.state IS 'State of the dependency (NULL once pruned).';
COMMENT ON COLUMN pgsched.dependency_results.result IS 'Its result, when it succeeded.';
COMMENT ON COLUMN pgsched.dependency_results.last_error IS 'Its last error, if any.';
