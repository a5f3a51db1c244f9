-- fn_event_type_register: add an event type to the vocabulary (idempotent). The domain is the
-- part before the first "." or "/". Registering again keeps registered_at/by and only replaces
-- the description when one is given. SECURITY INVOKER: the vocabulary is conveyor_admin's.
-- Answer: {"ok": true, "event_type": …, "domain": …, "already": <was it registered before>}.
CREATE OR REPLACE FUNCTION conveyor.fn_event_type_register(
    event_type  text,
    description text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_domain text;
BEGIN
    IF fn_event_type_register.event_type IS NULL
       OR char_length(fn_event_type_register.event_type) > 200
       OR fn_event_type_register.event_type !~ '^[a-z][a-z0-9_]*([./][a-z0-9_]+)+$' THEN
        RAISE EXCEPTION 'fn_event_type_register: event_type % is not a valid event type',
                        quote_nullable(fn_event_type_register.event_type)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use <domain>.<name> or <domain>/<name> in lowercase (at most 200 '
                         'characters), e.g. staging.record_approved or system/queue_worker_silent.';
    END IF;
    v_domain := substring(fn_event_type_register.event_type FROM '^[a-z0-9_]+');

    INSERT INTO event_type_registry AS r (event_type, domain, description)
    VALUES (fn_event_type_register.event_type, v_domain,
            COALESCE(fn_event_type_register.description, ''))
    ON CONFLICT ON CONSTRAINT event_type_registry_pkey DO NOTHING;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'event_type', fn_event_type_register.event_type,
                                  'domain', v_domain, 'already', false);
    END IF;

    IF fn_event_type_register.description IS NOT NULL THEN
        UPDATE event_type_registry AS r
           SET description = fn_event_type_register.description
         WHERE r.event_type = fn_event_type_register.event_type
           AND r.description IS DISTINCT FROM fn_event_type_register.description;
    END IF;
    RETURN jsonb_build_object('ok', true, 'event_type', fn_event_type_register.event_type,
                              'domain', v_domain, 'already', true);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_event_type_register(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_event_type_register(text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_event_type_register(text, text) IS
    'Register an event type (idempotent; domain = text before the first . or /). Answer {ok, event_type, domain, already}. Example: SELECT conveyor.fn_event_type_register(''system/queue_worker_silent'', ''a worker stopped beating'')';
