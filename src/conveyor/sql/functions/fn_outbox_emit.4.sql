-- fn_outbox_emit, phase 4 version: as phase 0's, and when the NOTIFY bridge is on it also sends
-- one `NOTIFY conveyor_events` (delivered at commit, merged by PostgreSQL within a transaction)
-- so a listening orchestrator dispatches at once instead of at its next tick. The notification
-- carries nothing the orchestrator relies on: the outbox cursor is the truth.
CREATE OR REPLACE FUNCTION conveyor.fn_outbox_emit(
    event_type text,
    payload    jsonb DEFAULT '{}',
    source     text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_payload jsonb := COALESCE(fn_outbox_emit.payload, '{}'::jsonb);
    v_id      bigint;
BEGIN
    IF jsonb_typeof(v_payload) <> 'object' THEN
        RAISE EXCEPTION 'fn_outbox_emit: payload must be a jsonb object, got a jsonb %',
                        jsonb_typeof(v_payload)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Wrap the value in an object, e.g. jsonb_build_object(''value'', …).';
    END IF;
    IF fn_outbox_emit.event_type IS NULL OR NOT EXISTS (
        SELECT 1 FROM event_type_registry AS r WHERE r.event_type = fn_outbox_emit.event_type
    ) THEN
        RAISE EXCEPTION 'fn_outbox_emit: event_type % is not registered',
                        quote_nullable(fn_outbox_emit.event_type)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Register it first (as conveyor_admin): SELECT '
                         'conveyor.fn_event_type_register(event_type => ''<domain>.<name>'').';
    END IF;

    INSERT INTO event_outbox AS eo (event_type, payload, source)
    VALUES (fn_outbox_emit.event_type, v_payload, fn_outbox_emit.source)
    RETURNING eo.id INTO v_id;
    IF fn_config_enabled('queue.notify.bridge_enabled') THEN
        PERFORM pg_notify('conveyor_events', '');
    END IF;
    RETURN v_id;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_outbox_emit(text, jsonb, text) FROM PUBLIC;
-- Not conveyor_worker: events drive dispatch and the staging pipeline, so a worker must not
-- forge them (its staging operations emit through fn_iu_op_*, which run as the owner).
GRANT EXECUTE ON FUNCTION conveyor.fn_outbox_emit(text, jsonb, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_outbox_emit(text, jsonb, text) IS
    'Append an event (registered type, object payload) in the caller''s transaction; returns its id. With queue.notify.bridge_enabled, also NOTIFY conveyor_events (a wake-up hint for dispatch). Unregistered type or non-object payload: SQLSTATE 22023. Example: SELECT conveyor.fn_outbox_emit(''staging.record_marked'', ''{"record_id": 1}'')';
