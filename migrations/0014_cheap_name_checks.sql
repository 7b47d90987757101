-- 0014: the name checks of pgsched.jobs without counted repeats. PostgreSQL evaluates every CHECK
-- constraint of a table on every UPDATE of a row, whatever the columns changed, and its regex engine
-- expands a counted repeat such as {0,199} into one automaton state per repetition: the two name
-- checks cost about 12 µs of database CPU per job (a claim and a finish each re-check both names),
-- the biggest single cost of the hot path. The same rules, written as an unbounded repeat plus a
-- length limit, cost well under 1 µs. Same names, same messages, same accepted names.

ALTER TABLE pgsched.jobs
    DROP CONSTRAINT jobs_queue_name_valid,
    DROP CONSTRAINT jobs_task_name_valid,
    ADD CONSTRAINT jobs_queue_name_valid CHECK (length(queue) <= 63 AND queue ~ '^[a-z0-9][a-z0-9_.-]*$'),
    ADD CONSTRAINT jobs_task_name_valid CHECK (length(task) <= 200 AND task ~ '^[A-Za-z_][A-Za-z0-9_.:-]*$');
