-- fn_heartbeat__component: raise (22023, naming the caller) unless component is a usable
-- component name: 1 to 255 bytes (fn_job_claim's limit for worker names, so a worker can use
-- one name for both) without control characters. Private: no EXECUTE grant.
CREATE OR REPLACE FUNCTION conveyor.fn_heartbeat__component(
    caller    text,
    component text
) RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    IF fn_heartbeat__component.component IS NULL OR fn_heartbeat__component.component = ''
       OR octet_length(fn_heartbeat__component.component) > 255
       OR fn_heartbeat__component.component ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION '%: component must be 1 to 255 bytes without control characters, got %',
                        caller, quote_nullable(left(fn_heartbeat__component.component, 64))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the component as it claims jobs, e.g. host:pid (the worker name).';
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_heartbeat__component(text, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_heartbeat__component(text, text) IS
    'Private: raise SQLSTATE 22023 unless component is 1..255 bytes without control characters.';
