-- name: job_totals_rollup
-- Add jobs finished in (since, upto] to the cluster totals and histogram buckets (only ever added to), reading only those jobs through jobs_finished_idx.
-- Entries of jobs.errors that are not a failed attempt: cancel, snooze (the attempt was given back), expired, and the reaper's
-- worker_lost / lease_expired (counted as lost); every other kind (exception, timeout, no_retry, retry, discard, result,
-- snooze_limit, ...) is one. An attempt's bucket is the smallest bound at or above its value: width_bucket over the negated
-- bounds counts the bounds >= value.
-- One pass over the jobs sums each into its (queue, task, duration bucket, wait bucket) group, a few hundred at most,
-- and the totals and buckets are summed from those: the jobs are never stored for a second look (a list of 100,000
-- spilled to disk). Per job: an empty errors array (most jobs) is not expanded, and the seconds are date_part's float8
-- (extract's numeric reaches float8 through its text form).
WITH bounds AS (
    SELECT %(bounds)s::float8[] AS le,
           (SELECT array_agg(-b ORDER BY b DESC) FROM unnest(%(bounds)s::float8[]) AS b) AS negated
), fresh AS (
    SELECT f.queue, f.task, f.duration_le, f.wait_le,
           sum(f.started) AS started, count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
           sum(f.failed) AS failed, sum(f.failed - f.died_failing::int) AS retried,
           count(*) FILTER (WHERE f.state = 'dead') AS dead, count(*) FILTER (WHERE f.state = 'cancelled') AS cancelled,
           sum(f.lost) AS lost, coalesce(sum(f.duration), 0) AS duration_sum, coalesce(sum(f.wait), 0) AS wait_sum,
           count(*) AS jobs
      FROM (SELECT j.queue, j.task, j.state, j.attempt + e.snoozed AS started, e.failed, e.lost, k.died_failing,
                   t.duration, t.wait,
                   CASE WHEN t.duration IS NOT NULL
                        THEN coalesce(b.le[cardinality(b.le) - width_bucket(-t.duration, b.negated) + 1], 'Infinity') END
                       AS duration_le,
                   CASE WHEN t.wait IS NOT NULL
                        THEN coalesce(b.le[cardinality(b.le) - width_bucket(-t.wait, b.negated) + 1], 'Infinity') END
                       AS wait_le
              FROM pgsched.jobs j
             CROSS JOIN bounds b
             CROSS JOIN LATERAL (
                   SELECT c.failed, c.lost, c.snoozed, coalesce(j.errors -> -1 ->> 'kind', 'exception') AS last_kind
                     FROM (SELECT count(*) FILTER (WHERE coalesce(x ->> 'kind', 'exception')
                                                   NOT IN ('cancel', 'snooze', 'expired', 'worker_lost', 'lease_expired')) AS failed,
                                  count(*) FILTER (WHERE x ->> 'kind' IN ('worker_lost', 'lease_expired')) AS lost,
                                  count(*) FILTER (WHERE x ->> 'kind' = 'snooze') AS snoozed
                             FROM jsonb_array_elements(CASE WHEN j.errors <> '[]' THEN j.errors END) AS x) AS c) AS e
             CROSS JOIN LATERAL (
                   -- died_failing: the last failure was not queued again; timed: the last attempt ran to an end in a worker
                   SELECT j.state = 'dead' AND e.failed > 0
                          AND e.last_kind NOT IN ('cancel', 'snooze', 'expired', 'worker_lost', 'lease_expired') AS died_failing,
                          j.started_at IS NOT NULL
                          AND (j.state = 'succeeded'
                               OR (j.state = 'dead' AND e.last_kind NOT IN ('cancel', 'snooze', 'expired', 'worker_lost', 'lease_expired'))
                               OR (j.state = 'cancelled' AND e.last_kind = 'cancel')) AS timed) AS k
             CROSS JOIN LATERAL (
                   SELECT CASE WHEN k.timed THEN greatest(date_part('epoch', j.finished_at - j.started_at), 0) END AS duration,
                          CASE WHEN k.timed THEN greatest(date_part('epoch', j.started_at - j.run_at), 0) END AS wait) AS t
             WHERE j.state IN ('succeeded', 'dead', 'cancelled')
               AND j.finished_at > %(since)s::timestamptz
               AND j.finished_at <= %(upto)s::timestamptz) AS f
     GROUP BY f.queue, f.task, f.duration_le, f.wait_le
), totals AS (
    INSERT INTO pgsched.job_totals AS t
           (queue, task, started, succeeded, failed, retried, dead, cancelled, lost, duration_sum, wait_sum)
    SELECT f.queue, f.task, sum(f.started), sum(f.succeeded), sum(f.failed), sum(f.retried), sum(f.dead),
           sum(f.cancelled), sum(f.lost), sum(f.duration_sum), sum(f.wait_sum)
      FROM fresh f
     GROUP BY f.queue, f.task
    ON CONFLICT (queue, task) DO UPDATE SET
        started = t.started + EXCLUDED.started, succeeded = t.succeeded + EXCLUDED.succeeded,
        failed = t.failed + EXCLUDED.failed, retried = t.retried + EXCLUDED.retried, dead = t.dead + EXCLUDED.dead,
        cancelled = t.cancelled + EXCLUDED.cancelled, lost = t.lost + EXCLUDED.lost,
        duration_sum = t.duration_sum + EXCLUDED.duration_sum, wait_sum = t.wait_sum + EXCLUDED.wait_sum
    RETURNING 1
), buckets AS (
    INSERT INTO pgsched.job_total_buckets AS b (queue, task, metric, le, jobs)
    SELECT m.queue, m.task, m.metric, m.le, sum(m.jobs)
      FROM (SELECT queue, task, 'duration' AS metric, duration_le AS le, jobs FROM fresh WHERE duration_le IS NOT NULL
            UNION ALL
            SELECT queue, task, 'wait', wait_le, jobs FROM fresh WHERE wait_le IS NOT NULL) AS m
     GROUP BY 1, 2, 3, 4
    ON CONFLICT (queue, task, metric, le) DO UPDATE SET jobs = b.jobs + EXCLUDED.jobs
    RETURNING 1
)
SELECT (SELECT count(*) FROM totals)::int AS totals, (SELECT count(*) FROM buckets)::int AS buckets

-- name: job_totals_list
-- The cluster-wide job counters per queue and task, for /metrics (one row per queue and task: a small table).
SELECT queue, task, started, succeeded, failed, retried, dead, cancelled, lost, duration_sum, wait_sum
  FROM pgsched.job_totals
 ORDER BY queue, task

-- name: job_total_buckets_list
-- The cluster-wide histogram buckets per queue, task and metric, for /metrics.
SELECT queue, task, metric, le, jobs
  FROM pgsched.job_total_buckets
 ORDER BY queue, task, metric, le

-- name: job_stats_watermark_get
-- How far (finished_at) the rollup has counted finished jobs; NULL before its first pass.
SELECT upto FROM pgsched.job_stats_watermark
