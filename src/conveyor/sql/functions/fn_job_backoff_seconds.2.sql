-- fn_job_backoff_seconds: the retry delay, in seconds, after a job's attempt-th attempt failed:
-- min(cap, base · 2^(attempt-1)), then scaled by a random factor in [1 - jitter, 1 + jitter] so
-- that jobs failing together do not retry together. The exponent is clamped to 62 BEFORE
-- power(): 2^62 s is far beyond any cap, and attempt 1000 (or 2^31-1) computes the same cap
-- instead of an enormous number or an overflow. The result is always in [0, cap · (1 + jitter)]
-- and never negative, so a retry is never scheduled in the past. Truncated to microseconds (the
-- resolution of timestamptz), so truncation cannot push it above the bound.
--
-- VOLATILE, not IMMUTABLE/STABLE: it calls random(). Declared IMMUTABLE, the planner would fold a
-- call with constant arguments into one constant for a whole statement (checked on PG 15: 100
-- rows, 1 distinct value), so every job failing in one statement would get the same jitter.
-- Pure otherwise: reads no table, so no SECURITY DEFINER. With jitter 0 the result is exact.
CREATE OR REPLACE FUNCTION conveyor.fn_job_backoff_seconds(
    attempt integer,
    base    numeric,
    cap     numeric,
    jitter  numeric
) RETURNS numeric
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_delay numeric;
BEGIN
    IF fn_job_backoff_seconds.attempt IS NULL OR fn_job_backoff_seconds.attempt < 1 THEN
        RAISE EXCEPTION 'fn_job_backoff_seconds: attempt is %; it must be 1 or more',
                        coalesce(fn_job_backoff_seconds.attempt::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the number of the attempt that failed (job_queue.attempts, counted at claim).';
    END IF;
    IF fn_job_backoff_seconds.base IS NULL OR fn_job_backoff_seconds.base < 0 OR fn_job_backoff_seconds.base = 'NaN'
       OR fn_job_backoff_seconds.cap IS NULL OR fn_job_backoff_seconds.cap < 0 OR fn_job_backoff_seconds.cap = 'NaN' THEN
        RAISE EXCEPTION 'fn_job_backoff_seconds: base is % and cap is %; both must be 0 or more',
                        coalesce(fn_job_backoff_seconds.base::text, 'NULL'),
                        coalesce(fn_job_backoff_seconds.cap::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass seconds, e.g. base 1 and cap 3600 (queue.retry.base_seconds, .cap_seconds).';
    END IF;
    IF fn_job_backoff_seconds.jitter IS NULL OR fn_job_backoff_seconds.jitter NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'fn_job_backoff_seconds: jitter is %; it must be from 0 to 1',
                        coalesce(fn_job_backoff_seconds.jitter::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a fraction of the delay, e.g. 0.1 for ±10% (queue.retry.jitter); 0 for none.';
    END IF;

    v_delay := least(fn_job_backoff_seconds.cap,
                     fn_job_backoff_seconds.base
                         * power(2::numeric, least(fn_job_backoff_seconds.attempt - 1, 62)::numeric));
    IF fn_job_backoff_seconds.jitter > 0 THEN
        v_delay := v_delay * (1 + fn_job_backoff_seconds.jitter * (2 * random()::numeric - 1));
    END IF;
    RETURN greatest(trunc(v_delay, 6), 0);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_backoff_seconds(integer, numeric, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_backoff_seconds(integer, numeric, numeric, numeric) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_backoff_seconds(integer, numeric, numeric, numeric) IS
    'Retry delay in seconds after the attempt-th failure: min(cap, base · 2^(attempt-1)) scaled by '
    'a random factor in [1 - jitter, 1 + jitter]; always in [0, cap · (1 + jitter)], exact when '
    'jitter = 0, no overflow at any attempt (the exponent is clamped at 62). attempt ≥ 1, base and '
    'cap ≥ 0, jitter 0..1, else SQLSTATE 22023. Example: SELECT conveyor.fn_job_backoff_seconds(3, 1, 3600, 0) → 4.';
