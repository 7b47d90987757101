-- 0033: VACUUM no longer truncates pgsched.jobs_live. Truncating the empty pages at the end of a table takes an
-- ACCESS EXCLUSIVE lock, again and again in short steps while it waits for other sessions to let go, and a queue
-- table gets such pages after every backlog: in a 20-minute soak at 5,000 jobs/s every autovacuum of jobs_live
-- truncated it (243 -> 153 MB and the like), and each time the worker's claims stood in that lock's way for about a
-- minute (46 jobs/s started instead of 5,000). The empty pages are reused by the next backlog instead, so the table
-- keeps the size of its largest working set; `VACUUM (TRUNCATE) pgsched.jobs_live` still gives the space back by hand.
ALTER TABLE pgsched.jobs_live SET (vacuum_truncate = false);
