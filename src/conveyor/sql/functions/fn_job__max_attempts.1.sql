-- fn_job__max_attempts: the attempt limit that applies to one job: fn_job__attempt_limit (the
-- rule) over the job's own max_attempts and its two settings read from dot_config. Used where
-- one job is at hand (fn_job_fail_transient, fn_job_lease_reaper); fn_job_claim applies the same
-- rule to a whole batch with a join. Private: no EXECUTE grant.
CREATE OR REPLACE FUNCTION conveyor.fn_job__max_attempts(
    kind         text,
    max_attempts integer
) RETURNS integer
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_limit integer;
BEGIN
    IF fn_job__max_attempts.max_attempts IS NOT NULL THEN
        RETURN fn_job__max_attempts.max_attempts;
    END IF;
    SELECT fn_job__attempt_limit(NULL, kind_cfg.value, default_cfg.value)
      INTO v_limit
      FROM (SELECT 1) AS one
      LEFT JOIN dot_config AS kind_cfg ON kind_cfg.key = 'queue.retry.max_attempts.' || fn_job__max_attempts.kind
      LEFT JOIN dot_config AS default_cfg ON default_cfg.key = 'queue.retry.max_attempts.default';
    RETURN v_limit;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__max_attempts(text, integer) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__max_attempts(text, integer) IS
    'Private: resolved attempt limit of a job (own, else queue.retry.max_attempts.<kind>, else .default, else 5).';
