-- Queries every pooled connection runs once, when it is opened.

-- name: server_port_get
-- The port the PostgreSQL server itself listens on (NULL over a Unix socket): another port than the one the client dialled means a pooler or proxy sits between.
SELECT inet_server_port() AS port

-- name: session_statement_timeout_set
-- Bound every statement of this (unpooled) session, e.g. the API's, in milliseconds.
SELECT set_config('statement_timeout', %(ms)s::text, false) AS statement_timeout

-- name: backend_pid_get
-- The server session answering this transaction (through a transaction-mode pooler it changes hands between clients).
SELECT pg_backend_pid() AS pid

-- name: replica_status_get
-- Whether this server is a standby, and how old the last transaction it replayed is (seconds; NULL when none yet).
SELECT pg_is_in_recovery() AS standby,
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 AS replay_age_seconds

-- name: transaction_jit_off
-- No JIT for the rest of this transaction (SET LOCAL): the leader's rollups and counts read each row once, cheaply, and past jit_above_cost the server compiled them at every call (1.2 s of LLVM work for a 160,000-job rollup that then ran in 0.4 s).
SELECT set_config('jit', 'off', true) AS jit
