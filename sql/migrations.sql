-- name: migration_lock
-- Serialise concurrent migrators on one session advisory lock.
SELECT pg_advisory_lock(1885827939, -1)

-- name: migration_unlock
-- Release the migrators' lock.
SELECT pg_advisory_unlock(1885827939, -1)

-- name: migration_xact_lock
-- Serialise concurrent migrators for one migration's transaction (through a transaction-mode pooler, which keeps no session lock).
SELECT pg_advisory_xact_lock(1885827939, -1)

-- name: migration_bootstrap
-- Create the schema and the version table if this database has never been migrated.
CREATE SCHEMA IF NOT EXISTS pgsched;
CREATE TABLE IF NOT EXISTS pgsched.migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgsched.migrations IS 'Applied schema migrations (migrations/NNNN_*.sql), one row each.';
COMMENT ON COLUMN pgsched.migrations.version IS 'Migration number.';
COMMENT ON COLUMN pgsched.migrations.name IS 'Migration file name without number and extension.';
COMMENT ON COLUMN pgsched.migrations.checksum IS 'SHA-256 of the file as applied; an edited file is refused.';
COMMENT ON COLUMN pgsched.migrations.applied_at IS 'When it was applied.'

-- name: migration_table_exists
-- Whether this database has the migrations table yet.
SELECT to_regclass('pgsched.migrations') IS NOT NULL AS exists

-- name: migration_list
-- Applied migrations in order.
SELECT version, name, checksum, applied_at FROM pgsched.migrations ORDER BY version

-- name: migration_record
-- Record one applied migration.
INSERT INTO pgsched.migrations (version, name, checksum) VALUES (%(version)s::int, %(name)s::text, %(checksum)s::text)
