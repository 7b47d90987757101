-- 0031: ANALYZE of pgsched.jobs samples 6,000 rows instead of 30,000. A queue table changes by more than autoanalyze's
-- threshold during every backlog, so production servers analyze it again and again while workers drain it; with the
-- default statistics target (100) each ANALYZE of a 100,000-job jobs_live took about 280 ms of a core on the 2-core
-- bench machine, and ANALYZE pgsched.jobs (the parent, then each partition) about 500 ms. The hot statements do not
-- depend on fine statistics (tests/worker/test_plans.py plans them in six statistics states), and 20 MCV entries and
-- histogram buckets keep the estimates of state, queue and times that the API's reads use. The payload columns, which
-- no statement filters on, get none at all. Set on the parent, it recurses to every partition that exists; a time
-- partition of finished jobs created later keeps the server's default (it is analyzed only as it fills).
-- A column added to pgsched.jobs later must set its own target (tests/test_statistics_targets.py checks).

DO $$
DECLARE
    col record;
BEGIN
    FOR col IN SELECT a.attname FROM pg_attribute a
                WHERE a.attrelid = 'pgsched.jobs'::regclass AND a.attnum > 0 AND NOT a.attisdropped LOOP
        EXECUTE format('ALTER TABLE pgsched.jobs ALTER COLUMN %I SET STATISTICS %s', col.attname,
                       CASE WHEN col.attname IN ('args', 'result', 'errors', 'progress_message') THEN 0 ELSE 20 END);
    END LOOP;
END $$;
