-- fn_job__limit_check: private helper of fn_job_queue_limit and fn_job_key_limit: check a cap and
-- a rate (22023 naming the argument and the public function fn) and return per_seconds to store
-- (1 when a rate is given without it; NULL without a rate).
CREATE OR REPLACE FUNCTION conveyor.fn_job__limit_check(
    fn              text,
    max_in_progress integer,
    rate            integer,
    per_seconds     numeric
) RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    IF max_in_progress IS NOT NULL AND max_in_progress NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION '%: max_in_progress is %; it must be from 1 to 1000000', fn, max_in_progress
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL to clear the cap; pause the queue (fn_job_queue_pause) to stop it.';
    END IF;
    IF rate IS NULL THEN
        IF per_seconds IS NOT NULL THEN
            RAISE EXCEPTION '%: per_seconds needs a rate', fn
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass rate => N with per_seconds => S for N jobs per S seconds.';
        END IF;
        RETURN NULL;
    END IF;
    IF rate NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION '%: rate is %; it must be from 1 to 1000000', fn, rate
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL to clear the rate; pause the queue (fn_job_queue_pause) to stop it.';
    END IF;
    IF per_seconds IS NOT NULL AND (per_seconds < 0.001 OR per_seconds > 31622400) THEN
        RAISE EXCEPTION '%: per_seconds is %; it must be from 0.001 to 31622400 (a year)', fn, per_seconds
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'E.g. rate => 100, per_seconds => 1, or rate => 1000, per_seconds => 3600.';
    END IF;
    RETURN coalesce(per_seconds, 1);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__limit_check(text, integer, integer, numeric) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__limit_check(text, integer, integer, numeric) IS
    'Private: check a cap and a rate for fn_job_queue_limit / fn_job_key_limit (SQLSTATE 22023); returns per_seconds to store.';
