-- fn_cron__walk: the cron slot nearest to start in one direction, in UTC. forward: the first slot
-- strictly after start; backward: the last slot at or before start. NULL when there is none
-- within 50 years (an expression like '0 0 31 2 *' never fires). Errors name caller.
-- Private: no EXECUTE grant.
--
-- Speed: it never steps minute by minute through time that cannot match. A month outside the
-- month set is skipped whole, a day that does not match whole, an hour outside the hour set
-- whole; only inside a matching hour does it step by minutes (at most 59). The worst case for a
-- slot that exists is about 11 + 30 + 23 + 59 steps; '0 0 29 2 *' crosses 8 years in ~300.
CREATE OR REPLACE FUNCTION conveyor.fn_cron__walk(
    cron    text,
    start   timestamptz,
    forward boolean,
    caller  text DEFAULT 'fn_cron_next'
) RETURNS timestamptz
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_cron  record := fn_cron__parse(fn_cron__walk.cron, coalesce(fn_cron__walk.caller, 'fn_cron_next'));
    -- Wall-clock UTC as timestamp without time zone: month and day arithmetic never meets DST.
    v_start timestamp := fn_cron__walk.start AT TIME ZONE 'UTC';
    v_t     timestamp := date_trunc('minute', fn_cron__walk.start AT TIME ZONE 'UTC');
    v_day   boolean;
    v_wday  boolean;
BEGIN
    IF fn_cron__walk.start IS NULL OR NOT isfinite(fn_cron__walk.start) THEN
        RAISE EXCEPTION '%: start % is not a finite timestamp', coalesce(fn_cron__walk.caller, 'fn_cron_next'),
                        quote_nullable(fn_cron__walk.start)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass a finite timestamptz.';
    END IF;
    IF fn_cron__walk.forward THEN
        v_t := v_t + interval '1 minute';
    END IF;

    LOOP
        IF v_t > v_start + interval '50 years' OR v_t < v_start - interval '50 years' THEN
            RETURN NULL;
        END IF;

        IF NOT extract(month FROM v_t)::integer = ANY (v_cron.months) THEN
            v_t := CASE WHEN fn_cron__walk.forward THEN date_trunc('month', v_t) + interval '1 month'
                        ELSE date_trunc('month', v_t) - interval '1 minute' END;
            CONTINUE;
        END IF;

        v_day := extract(day FROM v_t)::integer = ANY (v_cron.days);
        v_wday := extract(dow FROM v_t)::integer = ANY (v_cron.weekdays);
        IF NOT (CASE WHEN v_cron.day_star OR v_cron.weekday_star THEN v_day AND v_wday
                     ELSE v_day OR v_wday END) THEN
            v_t := CASE WHEN fn_cron__walk.forward THEN date_trunc('day', v_t) + interval '1 day'
                        ELSE date_trunc('day', v_t) - interval '1 minute' END;
            CONTINUE;
        END IF;

        IF NOT extract(hour FROM v_t)::integer = ANY (v_cron.hours) THEN
            v_t := CASE WHEN fn_cron__walk.forward THEN date_trunc('hour', v_t) + interval '1 hour'
                        ELSE date_trunc('hour', v_t) - interval '1 minute' END;
            CONTINUE;
        END IF;

        IF NOT extract(minute FROM v_t)::integer = ANY (v_cron.minutes) THEN
            v_t := CASE WHEN fn_cron__walk.forward THEN v_t + interval '1 minute'
                        ELSE v_t - interval '1 minute' END;
            CONTINUE;
        END IF;

        RETURN v_t AT TIME ZONE 'UTC';
    END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_cron__walk(text, timestamptz, boolean, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_cron__walk(text, timestamptz, boolean, text) IS
    'Private: the cron slot (UTC) strictly after start (forward) or at/before start (backward); NULL when none within 50 years.';
