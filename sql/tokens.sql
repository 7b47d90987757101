-- name: token_insert
-- Create an API token from the hash of its secret, optionally expiring; returns the new row.
INSERT INTO pgsched.api_tokens (name, scope, secret_hash, expires_at)
VALUES (%(name)s::text, %(scope)s::text, %(secret_hash)s::bytea,
        coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(expires_in)s::float8))
RETURNING id, name, scope, secret_hash, created_at, last_used_at, revoked_at, expires_at

-- name: token_get
-- One API token by id, revoked or not.
SELECT id, name, scope, secret_hash, created_at, last_used_at, revoked_at, expires_at
  FROM pgsched.api_tokens WHERE id = %(id)s::bigint

-- name: token_list
-- Every API token, newest first (hashes included; the caller drops them).
SELECT id, name, scope, secret_hash, created_at, last_used_at, revoked_at, expires_at
  FROM pgsched.api_tokens ORDER BY id DESC

-- name: token_revoke
-- Revoke a token; returns the row whether it was already revoked or not, nothing when it does not exist.
UPDATE pgsched.api_tokens
   SET revoked_at = coalesce(revoked_at, coalesce(%(now)s::timestamptz, now()))
 WHERE id = %(id)s::bigint
RETURNING id, name, scope, secret_hash, created_at, last_used_at, revoked_at, expires_at

-- name: token_touch
-- Record a successful use, at most once a minute per token.
UPDATE pgsched.api_tokens
   SET last_used_at = coalesce(%(now)s::timestamptz, now())
 WHERE id = %(id)s::bigint
   AND (last_used_at IS NULL OR last_used_at < coalesce(%(now)s::timestamptz, now()) - interval '1 minute')
