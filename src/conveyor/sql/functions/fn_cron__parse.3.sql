-- fn_cron__parse: a 5-field cron expression (minute hour day-of-month month day-of-week, UTC) or
-- a macro (@hourly, @daily/@midnight, @weekly, @monthly, @yearly/@annually) as sorted value
-- sets. Day-of-week 7 is folded into 0 (Sunday). day_star / weekday_star say whether that field
-- begins with `*`: as in Vixie cron, when both day fields are restricted a day matches if EITHER
-- matches (the dom/dow OR rule); when one begins with `*` (also `*/2`) a day must match both.
-- Errors (22023) name the caller, the field and the value. Private: no EXECUTE grant.
CREATE OR REPLACE FUNCTION conveyor.fn_cron__parse(
    cron             text,
    caller           text,
    OUT minutes      integer[],
    OUT hours        integer[],
    OUT days         integer[],
    OUT months       integer[],
    OUT weekdays     integer[],
    OUT day_star     boolean,
    OUT weekday_star boolean
)
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_hint   CONSTANT text := 'Write 5 fields, minute hour day-of-month month day-of-week (UTC), '
                              'e.g. ''*/15 * * * *'' or ''0 9 * * mon-fri'', or one of @hourly, '
                              '@daily, @weekly, @monthly, @yearly.';
    v_text   text := btrim(fn_cron__parse.cron, E' \t\r\n');
    v_fields text[];
BEGIN
    IF fn_cron__parse.cron IS NULL OR v_text = '' THEN
        RAISE EXCEPTION '%: cron expression is required', caller USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
    END IF;
    IF char_length(v_text) > 200 THEN
        RAISE EXCEPTION '%: cron expression is % characters long; the limit is 200', caller, char_length(v_text)
            USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
    END IF;
    IF v_text LIKE '@%' THEN
        v_text := CASE lower(v_text)
                      WHEN '@hourly' THEN '0 * * * *'
                      WHEN '@daily' THEN '0 0 * * *'
                      WHEN '@midnight' THEN '0 0 * * *'
                      WHEN '@weekly' THEN '0 0 * * 0'
                      WHEN '@monthly' THEN '0 0 1 * *'
                      WHEN '@yearly' THEN '0 0 1 1 *'
                      WHEN '@annually' THEN '0 0 1 1 *'
                  END;
        IF v_text IS NULL THEN
            RAISE EXCEPTION '%: cron expression %: macro % is not supported',
                            caller, quote_literal(cron), quote_literal(btrim(cron))
                USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
        END IF;
    END IF;

    v_fields := regexp_split_to_array(v_text, '\s+');
    IF cardinality(v_fields) <> 5 THEN
        RAISE EXCEPTION '%: cron expression %: has % fields; expected 5 (minute hour day-of-month month day-of-week)',
                        caller, quote_literal(cron), cardinality(v_fields)
            USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
    END IF;

    minutes := fn_cron__field(caller, cron, 'minute', v_fields[1], 0, 59);
    hours := fn_cron__field(caller, cron, 'hour', v_fields[2], 0, 23);
    days := fn_cron__field(caller, cron, 'day-of-month', v_fields[3], 1, 31);
    months := fn_cron__field(caller, cron, 'month', v_fields[4], 1, 12,
                             ARRAY['jan', 'feb', 'mar', 'apr', 'may', 'jun',
                                   'jul', 'aug', 'sep', 'oct', 'nov', 'dec'], 1);
    weekdays := fn_cron__field(caller, cron, 'day-of-week', v_fields[5], 0, 7,
                               ARRAY['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'], 0);
    weekdays := ARRAY(SELECT DISTINCT w.v % 7 FROM unnest(weekdays) AS w(v) ORDER BY 1);
    day_star := v_fields[3] LIKE '*%';
    weekday_star := v_fields[5] LIKE '*%';
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_cron__parse(text, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_cron__parse(text, text) IS
    'Private: a cron expression (5 fields, UTC, or @hourly/@daily/@weekly/@monthly/@yearly) as value sets plus the dom/dow star flags; bad input is SQLSTATE 22023 naming the field and value.';
