-- 0028: the statement-level workflow trigger of 0023 read transition tables, so PostgreSQL copied every row of
-- every UPDATE of jobs into them (about 5 us a job on the claim and the finish, for plain jobs too). Now a row
-- trigger whose WHEN only passes jobs with dependents notes each end or retry (BEFORE UPDATE fires on the source
-- partition for a row the UPDATE moves, and sees OLD and NEW), and the statement trigger, without transition
-- tables, runs only when something was noted (its WHEN reads one setting): a plain statement pays two WHEN tests.

DROP TRIGGER jobs_advance_dependents ON pgsched.jobs;
DROP FUNCTION pgsched.jobs_advance_dependents();

CREATE FUNCTION pgsched.jobs_note_dependents() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    -- Changes made by pgsched.dependents_advance itself are handled by its own loops.
    IF current_setting('pgsched.advancing', true) IS DISTINCT FROM 'on' THEN
        PERFORM set_config('pgsched.ended',
                           coalesce(current_setting('pgsched.ended', true), '') || NEW.id || ':' || NEW.state || ' ', true);
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION pgsched.jobs_note_dependents() IS 'Trigger BEFORE UPDATE on jobs, for a job with dependents that ends or comes back from an end: notes "id:new_state" in the transaction-local setting pgsched.ended, which the statement trigger jobs_advance_dependents takes. BEFORE UPDATE fires once the row is locked (after any recheck), on the source partition of a row the UPDATE moves.';

-- Named to fire after the other BEFORE UPDATE triggers (alphabetical order), none of which skips a row.
CREATE TRIGGER jobs_xnote_dependents BEFORE UPDATE ON pgsched.jobs FOR EACH ROW
    WHEN (old.has_dependents AND new.state IS DISTINCT FROM old.state
          AND (new.state IN ('succeeded', 'dead', 'cancelled')) <> (old.state IN ('succeeded', 'dead', 'cancelled')))
    EXECUTE FUNCTION pgsched.jobs_note_dependents();
COMMENT ON TRIGGER jobs_xnote_dependents ON pgsched.jobs IS 'Notes each job with dependents that an UPDATE ends or retries (pgsched.jobs_note_dependents), for jobs_advance_dependents at the end of the statement.';

CREATE FUNCTION pgsched.jobs_advance_dependents() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
DECLARE
    noted text := current_setting('pgsched.ended', true);
    g record;
BEGIN
    -- Taken before anything runs: the statements of dependents_advance fire this trigger too.
    PERFORM set_config('pgsched.ended', '', true);
    FOR g IN
        SELECT split_part(n.entry, ':', 2)::pgsched.job_state AS state,
               array_agg(DISTINCT split_part(n.entry, ':', 1)::bigint) AS ids
          FROM unnest(string_to_array(btrim(noted), ' ')) AS n(entry)
         GROUP BY 1
         ORDER BY 1
    LOOP
        PERFORM pgsched.dependents_advance(g.ids, g.state);
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION pgsched.jobs_advance_dependents() IS 'Trigger AFTER UPDATE on jobs, once per statement that noted jobs with dependents (pgsched.jobs_note_dependents): takes the notes and advances their dependents (pgsched.dependents_advance), one call per new state.';

CREATE TRIGGER jobs_advance_dependents AFTER UPDATE ON pgsched.jobs
    FOR EACH STATEMENT
    WHEN (current_setting('pgsched.ended', true) <> '')
    EXECUTE FUNCTION pgsched.jobs_advance_dependents();
COMMENT ON TRIGGER jobs_advance_dependents ON pgsched.jobs IS 'Advances the dependents of the jobs with dependents that an UPDATE ended or retried, once per statement, only when jobs_xnote_dependents noted some.';
