-- fn_job__retry_seconds, phase 1 version (phase 2 replaces it with backoff; its ddl.down
-- restores this file): how long a job whose attempt-th attempt failed waits before it may be
-- claimed again. Phase 1's rule is a fixed queue.retry.base_seconds (default 1), clamped to
-- 0..10 years, whatever the attempt. fn_job_fail_transient asks it, so the phase that changes
-- the delay changes only this helper. Private: no EXECUTE grant.
CREATE OR REPLACE FUNCTION conveyor.fn_job__retry_seconds(
    attempt integer
) RETURNS numeric
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    RETURN least(greatest(fn_job__config_number('queue.retry.base_seconds', 1), 0), 315576000);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__retry_seconds(integer) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__retry_seconds(integer) IS
    'Private: retry delay in seconds after the attempt-th failure: queue.retry.base_seconds (phase 1; phase 2 adds backoff).';
