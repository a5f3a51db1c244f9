-- fn_job__retry_seconds, phase 2 version (replaces the .1 file in place; phase 2's ddl.down
-- restores it): how long a job whose attempt-th attempt failed waits before it may be claimed
-- again, from dot_config. While queue.retry.backoff_enabled is false (the default: the
-- roadmap ships backoff with "no behavioural change yet") this is the phase-1 rule, a fixed
-- queue.retry.base_seconds. Once enabled it is fn_job_backoff_seconds(attempt, base, cap,
-- jitter). Settings are clamped to sane ranges first (base and cap 0..10 years, jitter 0..1), so a
-- mistyped value degrades to a bounded delay instead of an error in every failing worker: with
-- backoff on the result stays within [0, cap · (1 + jitter)], and now() + result never overflows.
-- Shared by fn_job_fail_transient and fn_job_lease_reaper. Private: no EXECUTE grant. Kept in
-- common with the .1 file: the signature, header and the base_seconds clamp (a version is a
-- whole CREATE; see ../README.md).
CREATE OR REPLACE FUNCTION conveyor.fn_job__retry_seconds(
    attempt integer
) RETURNS numeric
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_base numeric := least(greatest(fn_job__config_number('queue.retry.base_seconds', 1), 0), 315576000);
BEGIN
    IF NOT fn_config_enabled('queue.retry.backoff_enabled') THEN
        RETURN v_base;
    END IF;
    RETURN fn_job_backoff_seconds(
        greatest(coalesce(fn_job__retry_seconds.attempt, 1), 1),
        v_base,
        least(greatest(fn_job__config_number('queue.retry.cap_seconds', 3600), 0), 315576000),
        least(greatest(fn_job__config_number('queue.retry.jitter', 0.1), 0), 1));
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__retry_seconds(integer) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__retry_seconds(integer) IS
    'Private: retry delay in seconds after the attempt-th failure: queue.retry.base_seconds while '
    'queue.retry.backoff_enabled is false, else fn_job_backoff_seconds with base/cap/jitter from dot_config.';
