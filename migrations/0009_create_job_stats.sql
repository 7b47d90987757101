-- 0009: the dashboard. History for its charts: the leader rolls finished jobs up into one row per
-- (minute, queue, task) and per (hour, queue, task), reading only the rows finished since its
-- watermark through jobs_finished_idx, and drops rows older than 7 days. Nothing is added to the
-- claim or finish statements. And an index over waiting jobs in run_at order, so the dashboard's
-- available / scheduled / retrying pages cost a page, not the whole backlog.

CREATE TABLE pgsched.job_stats_minute (
    minute        timestamptz NOT NULL,
    queue         text NOT NULL,
    task          text NOT NULL,
    succeeded     integer NOT NULL DEFAULT 0,
    failed        integer NOT NULL DEFAULT 0,
    dead          integer NOT NULL DEFAULT 0,
    cancelled     integer NOT NULL DEFAULT 0,
    wait_sum      double precision NOT NULL DEFAULT 0,
    wait_max      double precision NOT NULL DEFAULT 0,
    run_sum       double precision NOT NULL DEFAULT 0,
    run_max       double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, task)
);
COMMENT ON TABLE pgsched.job_stats_minute IS 'Finished jobs per minute, queue and task, rolled up by the leader from pgsched.jobs (jobs_finished_idx) since pgsched.job_stats_watermark; kept 7 days. The dashboard''s throughput, failure and latency charts read it.';
COMMENT ON COLUMN pgsched.job_stats_minute.minute IS 'Start of the minute (UTC) in which the jobs finished.';
COMMENT ON COLUMN pgsched.job_stats_minute.queue IS 'Queue of the jobs.';
COMMENT ON COLUMN pgsched.job_stats_minute.task IS 'Task of the jobs.';
COMMENT ON COLUMN pgsched.job_stats_minute.succeeded IS 'Jobs that finished as succeeded in this minute.';
COMMENT ON COLUMN pgsched.job_stats_minute.failed IS 'Failed attempts (entries of errors) of the jobs that finished in this minute, whatever their final state.';
COMMENT ON COLUMN pgsched.job_stats_minute.dead IS 'Jobs that finished as dead (out of attempts) in this minute.';
COMMENT ON COLUMN pgsched.job_stats_minute.cancelled IS 'Jobs that finished as cancelled in this minute.';
COMMENT ON COLUMN pgsched.job_stats_minute.wait_sum IS 'Sum over jobs that started of seconds from run_at to started_at of their last attempt.';
COMMENT ON COLUMN pgsched.job_stats_minute.wait_max IS 'Longest such wait, in seconds.';
COMMENT ON COLUMN pgsched.job_stats_minute.run_sum IS 'Sum over jobs that started of seconds from started_at to finished_at of their last attempt.';
COMMENT ON COLUMN pgsched.job_stats_minute.run_max IS 'Longest such run, in seconds.';

CREATE TABLE pgsched.job_stats_hour (LIKE pgsched.job_stats_minute INCLUDING DEFAULTS);
ALTER TABLE pgsched.job_stats_hour RENAME COLUMN minute TO hour;
ALTER TABLE pgsched.job_stats_hour ADD PRIMARY KEY (hour, queue, task);
COMMENT ON TABLE pgsched.job_stats_hour IS 'pgsched.job_stats_minute summed per hour (same columns, same pass, same 7 days): the 24 h and 7 d charts read it.';
COMMENT ON COLUMN pgsched.job_stats_hour.hour IS 'Start of the hour (UTC) in which the jobs finished.';
COMMENT ON COLUMN pgsched.job_stats_hour.queue IS 'Queue of the jobs.';
COMMENT ON COLUMN pgsched.job_stats_hour.task IS 'Task of the jobs.';
COMMENT ON COLUMN pgsched.job_stats_hour.succeeded IS 'Jobs that finished as succeeded in this hour.';
COMMENT ON COLUMN pgsched.job_stats_hour.failed IS 'Failed attempts (entries of errors) of the jobs that finished in this hour.';
COMMENT ON COLUMN pgsched.job_stats_hour.dead IS 'Jobs that finished as dead in this hour.';
COMMENT ON COLUMN pgsched.job_stats_hour.cancelled IS 'Jobs that finished as cancelled in this hour.';
COMMENT ON COLUMN pgsched.job_stats_hour.wait_sum IS 'Sum of seconds from run_at to started_at (jobs that started).';
COMMENT ON COLUMN pgsched.job_stats_hour.wait_max IS 'Longest such wait, in seconds.';
COMMENT ON COLUMN pgsched.job_stats_hour.run_sum IS 'Sum of seconds from started_at to finished_at (jobs that started).';
COMMENT ON COLUMN pgsched.job_stats_hour.run_max IS 'Longest such run, in seconds.';

CREATE TABLE pgsched.job_stats_watermark (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    upto       timestamptz
);
INSERT INTO pgsched.job_stats_watermark (only_row, upto) VALUES (true, NULL);
COMMENT ON TABLE pgsched.job_stats_watermark IS 'One row: how far (finished_at) the leader has rolled finished jobs up into pgsched.job_stats_minute. Each pass reads only rows finished after it.';
COMMENT ON COLUMN pgsched.job_stats_watermark.only_row IS 'Always true: the table holds one row.';
COMMENT ON COLUMN pgsched.job_stats_watermark.upto IS 'Jobs finished at or before this instant are counted; NULL before the first pass (which starts 7 days back).';

-- One entry per waiting job: claims leave it (the new row version is running), so only enqueues and
-- retries pay for it; the claim and finish statements do not.
CREATE INDEX jobs_waiting_idx ON pgsched.jobs (run_at, id) WHERE state = 'queued';
COMMENT ON INDEX pgsched.jobs_waiting_idx IS 'Queued jobs in run_at order: the dashboard''s available, scheduled and retrying pages read a page of it.';
