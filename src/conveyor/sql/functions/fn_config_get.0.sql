-- fn_config_get: the value of one dot_config key, or NULL when the key is not set.
-- Hot path of every gated function: one primary-key lookup, no locks, no writes.
CREATE OR REPLACE FUNCTION conveyor.fn_config_get(key text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
-- plpgsql for its cached plan (see fn_config_enabled).
BEGIN
    RETURN (SELECT dc.value FROM conveyor.dot_config AS dc WHERE dc.key = fn_config_get.key);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_config_get(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_config_get(text)
    TO conveyor_admin, conveyor_worker, conveyor_reader;
COMMENT ON FUNCTION conveyor.fn_config_get(text) IS
    'Value of dot_config key (jsonb), NULL when the key is not set. Example: SELECT conveyor.fn_config_get(''iu.auto_instantiate.legacy_enabled'')';
