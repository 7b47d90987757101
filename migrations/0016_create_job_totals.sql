-- 0016: cluster-wide job metrics. Monotonic totals per (queue, task) and histogram buckets of run and
-- wait time, added to by the leader's job-stats rollup pass (same transaction, same window, same rows
-- read through jobs_finished_idx), never pruned. The API's /metrics reads these small tables instead of
-- aggregating pgsched.jobs; nothing is added to the claim or finish statements.

CREATE TABLE pgsched.job_totals (
    queue         text NOT NULL,
    task          text NOT NULL,
    started       bigint NOT NULL DEFAULT 0,
    succeeded     bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0,
    retried       bigint NOT NULL DEFAULT 0,
    dead          bigint NOT NULL DEFAULT 0,
    cancelled     bigint NOT NULL DEFAULT 0,
    lost          bigint NOT NULL DEFAULT 0,
    duration_sum  double precision NOT NULL DEFAULT 0,
    wait_sum      double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, task)
);
COMMENT ON TABLE pgsched.job_totals IS 'Cluster-wide job counters per queue and task since this migration, counted when a job finishes (succeeded, dead or cancelled) by the leader''s rollup pass (pgsched.job_stats_watermark); only ever added to. The API''s /metrics exports them as pgsched_cluster_*.';
COMMENT ON COLUMN pgsched.job_totals.queue IS 'Queue of the jobs.';
COMMENT ON COLUMN pgsched.job_totals.task IS 'Task of the jobs.';
COMMENT ON COLUMN pgsched.job_totals.started IS 'Attempts started (jobs.attempt of each finished job).';
COMMENT ON COLUMN pgsched.job_totals.succeeded IS 'Jobs that finished as succeeded.';
COMMENT ON COLUMN pgsched.job_totals.failed IS 'Failed attempts: entries of jobs.errors of kind exception, timeout or result (not cancel, not worker_lost).';
COMMENT ON COLUMN pgsched.job_totals.retried IS 'Failed attempts that were queued again (every failure but a dead job''s last one).';
COMMENT ON COLUMN pgsched.job_totals.dead IS 'Jobs that finished as dead (out of attempts, a permanent error, or too many worker losses).';
COMMENT ON COLUMN pgsched.job_totals.cancelled IS 'Jobs that finished as cancelled, while waiting or while running.';
COMMENT ON COLUMN pgsched.job_totals.lost IS 'Attempts charged to a lost worker by the reaper (errors entries of kind worker_lost).';
COMMENT ON COLUMN pgsched.job_totals.duration_sum IS 'Sum of seconds from started_at to finished_at of each job''s last attempt, when it ran to an end in a worker.';
COMMENT ON COLUMN pgsched.job_totals.wait_sum IS 'Sum of seconds from run_at to started_at of those same attempts.';

CREATE TABLE pgsched.job_total_buckets (
    queue   text NOT NULL,
    task    text NOT NULL,
    metric  text NOT NULL CONSTRAINT job_total_buckets_metric CHECK (metric IN ('duration', 'wait')),
    le      double precision NOT NULL,
    jobs    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, task, metric, le)
);
COMMENT ON TABLE pgsched.job_total_buckets IS 'Histogram buckets (not cumulative) of the attempts summed in pgsched.job_totals.duration_sum and wait_sum; only ever added to.';
COMMENT ON COLUMN pgsched.job_total_buckets.queue IS 'Queue of the jobs.';
COMMENT ON COLUMN pgsched.job_total_buckets.task IS 'Task of the jobs.';
COMMENT ON COLUMN pgsched.job_total_buckets.metric IS 'duration (started_at to finished_at) or wait (run_at to started_at).';
COMMENT ON COLUMN pgsched.job_total_buckets.le IS 'Upper bound in seconds: the smallest bucket bound at or above the value (Infinity past the last bound).';
COMMENT ON COLUMN pgsched.job_total_buckets.jobs IS 'Attempts whose value falls in this bucket.';
