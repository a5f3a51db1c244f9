-- fn_outbox__append: private helper of every fn_outbox_emit version, the emit itself: check the
-- event (registered type, object payload; SQLSTATE 22023 with a hint otherwise, worded for
-- fn_outbox_emit, its only caller) and insert it into event_outbox in the caller's transaction;
-- returns its id. A new fn_outbox_emit version adds only what it does on top (phase 4: NOTIFY).
CREATE OR REPLACE FUNCTION conveyor.fn_outbox__append(
    event_type text,
    payload    jsonb,
    source     text
) RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_payload jsonb := COALESCE(fn_outbox__append.payload, '{}'::jsonb);
    v_id      bigint;
BEGIN
    IF jsonb_typeof(v_payload) <> 'object' THEN
        RAISE EXCEPTION 'fn_outbox_emit: payload must be a jsonb object, got a jsonb %',
                        jsonb_typeof(v_payload)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Wrap the value in an object, e.g. jsonb_build_object(''value'', …).';
    END IF;
    IF fn_outbox__append.event_type IS NULL OR NOT EXISTS (
        SELECT 1 FROM event_type_registry AS r WHERE r.event_type = fn_outbox__append.event_type
    ) THEN
        RAISE EXCEPTION 'fn_outbox_emit: event_type % is not registered',
                        quote_nullable(fn_outbox__append.event_type)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Register it first (as conveyor_admin): SELECT '
                         'conveyor.fn_event_type_register(event_type => ''<domain>.<name>'').';
    END IF;

    INSERT INTO event_outbox AS eo (event_type, payload, source)
    VALUES (fn_outbox__append.event_type, v_payload, fn_outbox__append.source)
    RETURNING eo.id INTO v_id;
    RETURN v_id;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_outbox__append(text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_outbox__append(text, jsonb, text) IS
    'Private: check and insert one event for fn_outbox_emit (every version); returns its id.';
