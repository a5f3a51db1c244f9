-- fn_config_set: create or change one dot_config key and record who changed it and when.
-- SECURITY INVOKER on purpose: only conveyor_admin (which holds the table privileges) may call
-- it, and current_user is then the real caller, so updated_by defaults to who actually did it.
-- Answer: {"ok": true, "key": …, "previous": <old value or null>, "value": <new value>}.
CREATE OR REPLACE FUNCTION conveyor.fn_config_set(
    key         text,
    value       jsonb,
    updated_by  text DEFAULT NULL,
    description text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_actor    text := COALESCE(NULLIF(fn_config_set.updated_by, ''), current_user);
    v_previous jsonb;
BEGIN
    IF fn_config_set.key IS NULL OR fn_config_set.key !~ '^[a-z0-9_]+(\.[a-z0-9_]+)+$' THEN
        RAISE EXCEPTION 'fn_config_set: key % is not a valid config key',
                        quote_nullable(fn_config_set.key)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Keys are two or more dot-separated words of a-z, 0-9 and _, '
                         'e.g. queue.job_substrate.enabled.';
    END IF;
    IF fn_config_set.value IS NULL THEN
        RAISE EXCEPTION 'fn_config_set: value for key % is NULL', fn_config_set.key
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a jsonb value, e.g. ''true''::jsonb or ''300''::jsonb.';
    END IF;

    -- Lock-then-update, else insert; a concurrent first insert of the same key makes the
    -- insert a no-op, and the loop comes back to lock and update the winner's row, so
    -- "previous" is always the value this call replaced.
    LOOP
        SELECT dc.value INTO v_previous
          FROM dot_config AS dc
         WHERE dc.key = fn_config_set.key
           FOR UPDATE;
        IF FOUND THEN
            UPDATE dot_config AS dc
               SET value = fn_config_set.value,
                   description = COALESCE(fn_config_set.description, dc.description),
                   updated_at = now(),
                   updated_by = v_actor
             WHERE dc.key = fn_config_set.key;
            EXIT;
        END IF;
        INSERT INTO dot_config AS dc (key, value, description, updated_at, updated_by)
        VALUES (fn_config_set.key, fn_config_set.value, COALESCE(fn_config_set.description, ''),
                now(), v_actor)
        ON CONFLICT ON CONSTRAINT dot_config_pkey DO NOTHING;
        EXIT WHEN FOUND;
    END LOOP;

    RETURN jsonb_build_object('ok', true, 'key', fn_config_set.key,
                              'previous', v_previous, 'value', fn_config_set.value);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_config_set(text, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_config_set(text, jsonb, text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_config_set(text, jsonb, text, text) IS
    'Upsert a dot_config key; records updated_by (NULL: current_user) and updated_at; description NULL keeps the old one. Answer {ok, key, previous, value}. Bad key: SQLSTATE 22023. Example: SELECT conveyor.fn_config_set(''queue.job_substrate.enabled'', ''true'')';
