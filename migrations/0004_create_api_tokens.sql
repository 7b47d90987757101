-- 0004: API tokens for the REST API. Only a SHA-256 hash of each token's secret is stored;
-- the token itself is shown once when it is created. Revoked tokens stay for the audit trail.

CREATE TABLE pgsched.api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    scope         text NOT NULL,
    secret_hash   bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CONSTRAINT api_tokens_scope_valid CHECK (scope IN ('read', 'write', 'admin')),
    CONSTRAINT api_tokens_name_valid CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$'),
    CONSTRAINT api_tokens_hash_length CHECK (octet_length(secret_hash) = 32)
);
COMMENT ON TABLE pgsched.api_tokens IS 'Bearer tokens of the REST API (pgsched_<id>_<secret>); only the SHA-256 of the secret is kept.';
COMMENT ON COLUMN pgsched.api_tokens.id IS 'Token id, the public part of the token.';
COMMENT ON COLUMN pgsched.api_tokens.name IS 'Who or what the token is for (a label chosen at creation).';
COMMENT ON COLUMN pgsched.api_tokens.scope IS 'read (GET endpoints), write (also mutations) or admin (also tokens and purges).';
COMMENT ON COLUMN pgsched.api_tokens.secret_hash IS 'SHA-256 of the token secret; compared in constant time.';
COMMENT ON COLUMN pgsched.api_tokens.created_at IS 'When the token was created.';
COMMENT ON COLUMN pgsched.api_tokens.last_used_at IS 'Last successful use (updated at most once a minute).';
COMMENT ON COLUMN pgsched.api_tokens.revoked_at IS 'When the token was revoked; a revoked token is refused.';
