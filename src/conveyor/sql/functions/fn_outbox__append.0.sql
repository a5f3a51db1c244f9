-- fn_outbox__append: private helper of every fn_outbox_emit version, the emit itself: check the
-- event (registered type, object payload of at most outbox.payload.max_bytes; SQLSTATE 22023
-- with a hint otherwise, worded for fn_outbox_emit, its only caller) and insert it into event_outbox in the caller's transaction;
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
    v_limit   integer;
    v_size    integer;
BEGIN
    IF jsonb_typeof(v_payload) <> 'object' THEN
        RAISE EXCEPTION 'fn_outbox_emit: payload must be a jsonb object, got a jsonb %',
                        jsonb_typeof(v_payload)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Wrap the value in an object, e.g. jsonb_build_object(''value'', …).';
    END IF;
    -- Every consumer reads every event: one oversized payload slows them all, for as long as
    -- the outbox keeps it. A missing or non-numeric setting means the shipped 256 KiB.
    SELECT CASE WHEN jsonb_typeof(dc.value) = 'number' THEN dc.value::integer END INTO v_limit
      FROM dot_config AS dc
     WHERE dc.key = 'outbox.payload.max_bytes';
    v_limit := coalesce(v_limit, 262144);
    v_size := pg_column_size(v_payload);
    IF v_size <= v_limit AND pg_column_compression(v_payload) IS NOT NULL THEN
        v_size := pg_column_size(v_payload || '{}'::jsonb);  -- compressed: measure it unpacked
    END IF;
    IF v_size > v_limit THEN
        RAISE EXCEPTION 'fn_outbox_emit: payload is % bytes (jsonb size); the limit is % bytes '
                        '(outbox.payload.max_bytes)', v_size, v_limit
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Put large data in a table of your own and emit its id in the payload.';
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
