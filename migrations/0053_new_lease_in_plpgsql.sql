-- 0053: pgsched.new_lease() is a PL/pgSQL function (the same expression). As a LANGUAGE sql function with a pinned
-- search_path it could not be inlined, and PostgreSQL before 18 parses, analyzes and plans such a function's body
-- anew in every statement that calls it: about 70 us of server CPU in every claim (the worker's claim calls it once
-- per batch, pgsched.claim_limited once per call), against about 20 us for a PL/pgSQL call, whose plan the session
-- keeps. On an idle worker that is part of every job's pickup.

CREATE OR REPLACE FUNCTION pgsched.new_lease() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    RETURN (extract(epoch FROM clock_timestamp()) * 1000000)::bigint * 1024 + nextval('pgsched.lease_seq') % 1024;
END $$;
