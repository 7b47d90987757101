-- 0054: the schedules_check trigger looks a schedule's time zone up only when the zone is set: on an insert, or an
-- update that changes it (and never for UTC). pg_timezone_names reads every zone file of the server's time zone
-- database (about 600) at each call: 50-60 ms of server CPU, which every write of a schedule paid, the leader's
-- fires (last_fired_at, next_fire_at) and the API's PATCH of a cron included. A zone once accepted stays accepted.

CREATE OR REPLACE FUNCTION pgsched.schedules_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pgsched'
    AS $$
BEGIN
    IF NEW.timezone <> 'UTC' AND (TG_OP = 'INSERT' OR NEW.timezone IS DISTINCT FROM OLD.timezone) THEN
        IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.timezone) THEN
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
