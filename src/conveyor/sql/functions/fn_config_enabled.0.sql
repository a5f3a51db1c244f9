-- fn_config_enabled: true iff the key is set to the jsonb value true; a missing key, a NULL key
-- or any other value (including the string "true") is false. The gate every flagged function
-- checks first, so it stays one primary-key lookup.
CREATE OR REPLACE FUNCTION conveyor.fn_config_enabled(key text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
-- plpgsql, not sql: a sql function with a SET clause cannot be inlined and paid ~22 µs a call on
-- the hot path (every gated fn_job_* call), plpgsql with its cached plan ~6 µs.
BEGIN
    RETURN COALESCE(
        (SELECT dc.value = 'true'::jsonb
           FROM conveyor.dot_config AS dc
          WHERE dc.key = fn_config_enabled.key),
        false);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_config_enabled(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_config_enabled(text)
    TO conveyor_admin, conveyor_worker, conveyor_reader;
COMMENT ON FUNCTION conveyor.fn_config_enabled(text) IS
    'True iff dot_config key holds the jsonb value true; a missing key is false. Example: SELECT conveyor.fn_config_enabled(''queue.job_substrate.enabled'')';
