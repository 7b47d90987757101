-- 0054: a schedule's time zone is checked against a table of the server's zone names (pgsched.time_zones), taken from
-- pg_timezone_names now, rather than against pg_timezone_names itself, which reads every zone file of the server's
-- time zone database (about 600) at each call: 50-60 ms of server CPU that every write of a schedule paid, the
-- leader's fires (last_fired_at, next_fire_at) and the API's PATCH of a cron included. The check runs only when the
-- zone is set (an insert, or an update that changes it). A name the table lacks is still looked up in
-- pg_timezone_names (a zone added by a later update of the server's zone database), so it is accepted all the same.

CREATE TABLE pgsched.time_zones (
    name text PRIMARY KEY
);
COMMENT ON TABLE pgsched.time_zones IS
    'Time zone names a schedule may use, as pg_timezone_names listed them when migration 0054 ran (a name missing here is looked up there).';
COMMENT ON COLUMN pgsched.time_zones.name IS 'A time zone name, as in pg_timezone_names.';
INSERT INTO pgsched.time_zones (name) SELECT DISTINCT name FROM pg_timezone_names;

CREATE OR REPLACE FUNCTION pgsched.schedules_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.timezone IS DISTINCT FROM OLD.timezone THEN
        IF NOT EXISTS (SELECT 1 FROM pgsched.time_zones z WHERE z.name = NEW.timezone)
           AND NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.timezone) THEN
            RAISE EXCEPTION 'pgsched: unknown time zone "%" for schedule "%"', NEW.timezone, NEW.name
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an IANA name such as Europe/Paris or UTC.';
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
        IF NEW.cron IS DISTINCT FROM OLD.cron OR NEW.timezone IS DISTINCT FROM OLD.timezone THEN
            NEW.next_fire_at := CASE WHEN NEW.next_fire_at IS DISTINCT FROM OLD.next_fire_at THEN NEW.next_fire_at END;
            NEW.last_error := NULL;
        END IF;
    END IF;
    RETURN NEW;
END $$;
