-- fn_job__max_attempts: the attempt limit that applies to a job: its own max_attempts, else the
-- config queue.retry.max_attempts.<kind>, else queue.retry.max_attempts.default, else 5. A config
-- value counts only if it is a JSON number from 1 to 1000. fn_job_claim resolves the same rule
-- inline, set-wise (keep the two in step). Private: no EXECUTE grant.
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
    SELECT coalesce(
               CASE WHEN jsonb_typeof(kind_cfg.value) = 'number' AND kind_cfg.value::numeric BETWEEN 1 AND 1000
                    THEN kind_cfg.value::numeric::integer END,
               CASE WHEN jsonb_typeof(default_cfg.value) = 'number' AND default_cfg.value::numeric BETWEEN 1 AND 1000
                    THEN default_cfg.value::numeric::integer END,
               5)
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
