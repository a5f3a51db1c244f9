-- fn_cron__field: the set of values one field of a cron expression stands for, sorted and
-- distinct. A field is a comma-separated list of items; an item is `*`, `N`, `N-M`, each
-- optionally followed by `/STEP` (`N/STEP` means N to the field's maximum), where N and M are
-- numbers or, for month and day-of-week, three-letter English names (jan…dec, sun…sat). Anything
-- else is an error naming the caller, the field and the offending item (22023). Private: no
-- EXECUTE grant; fn_cron__parse calls it once per field.
CREATE OR REPLACE FUNCTION conveyor.fn_cron__field(
    caller     text,
    cron       text,
    field      text,
    spec       text,
    low        integer,
    high       integer,
    names      text[]  DEFAULT NULL,
    name_first integer DEFAULT 0
) RETURNS integer[]
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_hint  CONSTANT text := 'A cron expression has 5 fields: minute (0-59) hour (0-23) '
                             'day-of-month (1-31) month (1-12 or jan-dec) day-of-week (0-7 or '
                             'sun-sat, 0 and 7 are Sunday); each a list of *, N, N-M, with an '
                             'optional /STEP; or one of @hourly, @daily, @weekly, @monthly, @yearly.';
    v_item  text;
    v_parts text[];
    v_ends  text[];
    v_from  integer;
    v_to    integer;
    v_step  integer;
    v_set   integer[] := '{}';
BEGIN
    FOREACH v_item IN ARRAY string_to_array(fn_cron__field.spec, ',') LOOP
        v_parts := regexp_match(v_item, '^([^/]+)(?:/([0-9]{1,4}))?$');
        IF v_parts IS NULL THEN
            RAISE EXCEPTION '%: cron expression %: % field % is not *, N, N-M or one of those with /STEP',
                            caller, quote_literal(cron), field, quote_literal(v_item)
                USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
        END IF;
        v_step := coalesce(v_parts[2]::integer, 1);
        IF v_step < 1 OR v_step > high - low + 1 THEN
            RAISE EXCEPTION '%: cron expression %: % field % has step %; it must be from 1 to %',
                            caller, quote_literal(cron), field, quote_literal(v_item), v_step, high - low + 1
                USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
        END IF;

        IF v_parts[1] = '*' THEN
            v_from := low;
            v_to := high;
        ELSE
            v_ends := regexp_match(lower(v_parts[1]), '^([a-z]{3}|[0-9]{1,2})(?:-([a-z]{3}|[0-9]{1,2}))?$');
            IF v_ends IS NULL THEN
                RAISE EXCEPTION '%: cron expression %: % field % is not a number, a name or a range',
                                caller, quote_literal(cron), field, quote_literal(v_item)
                    USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
            END IF;
            FOR v_i IN 1..2 LOOP
                CONTINUE WHEN v_ends[v_i] IS NULL;
                IF v_ends[v_i] ~ '^[a-z]' THEN
                    IF names IS NULL OR array_position(names, v_ends[v_i]) IS NULL THEN
                        RAISE EXCEPTION '%: cron expression %: % field % names %, which this field does not know',
                                        caller, quote_literal(cron), field, quote_literal(v_item),
                                        quote_literal(v_ends[v_i])
                            USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
                    END IF;
                    v_ends[v_i] := (array_position(names, v_ends[v_i]) - 1 + name_first)::text;
                END IF;
                IF v_ends[v_i]::integer NOT BETWEEN low AND high THEN
                    RAISE EXCEPTION '%: cron expression %: % field % is outside %-%',
                                    caller, quote_literal(cron), field, quote_literal(v_item), low, high
                        USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
                END IF;
            END LOOP;
            v_from := v_ends[1]::integer;
            -- N/STEP runs from N to the field's maximum, as in Vixie cron and croniter.
            v_to := coalesce(v_ends[2]::integer, CASE WHEN v_parts[2] IS NULL THEN v_from ELSE high END);
            IF v_from > v_to THEN
                RAISE EXCEPTION '%: cron expression %: % field % is a range that runs backwards',
                                caller, quote_literal(cron), field, quote_literal(v_item)
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Write ranges low-high; wrap-around ranges (22-2) are two items: 22-23,0-2.';
            END IF;
        END IF;
        v_set := v_set || ARRAY(SELECT generate_series(v_from, v_to, v_step));
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT s.v FROM unnest(v_set) AS s(v) ORDER BY s.v);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_cron__field(text, text, text, text, integer, integer, text[], integer) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_cron__field(text, text, text, text, integer, integer, text[], integer) IS
    'Private: the sorted values one cron field stands for (*, N, N-M, names, /STEP, lists); a bad item is SQLSTATE 22023 naming the field and the item.';
