-- fn_pilot_mark: the operator's MARK with a payload: stage (collection, record_key) through
-- iu_core.fn_iu_op_mark (unchanged; emits staging.record_marked) and keep the payload and its
-- sha256 in pilot_staged_payload, in one transaction. Unlike fn_iu_op_mark, which answers
-- already:true, a key that is already staged is an error here: an operator typing a key twice
-- wants to hear it. Bad input raises and writes nothing:
--   * an unknown collection (22023): neither pilot.cut.collection nor one that already has
--     staged records, so a typo never starts a new collection (iu_core.fn_iu_op_mark still can);
--   * a key already staged in the collection (23505);
--   * a payload missing or over pilot.cut.payload_max_bytes (22023; 54000 would read as a
--     server limit, not as the caller's input).
-- Not gated by pilot.cut.enabled: the operator marks and approves while the pilot is off, and
-- the records wait at approved.
-- Answer: fn_iu_op_mark's answer plus "payload_bytes" and "checksum".
CREATE OR REPLACE FUNCTION conveyor.fn_pilot_mark(
    collection  text,
    record_key  text,
    payload     text,
    actor       text,
    content_ref text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_max    integer := fn_job__config_number('pilot.cut.payload_max_bytes', 65536)::integer;
    v_pilot  text := fn_config_get('pilot.cut.collection') #>> '{}';
    v_bytes  integer := octet_length(fn_pilot_mark.payload);
    v_answer jsonb;
    v_sum    text;
BEGIN
    IF fn_pilot_mark.payload IS NULL THEN
        RAISE EXCEPTION 'fn_pilot_mark: payload is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the record''s content as text (--payload); it is what CUT writes to the target.';
    END IF;
    IF v_bytes > v_max THEN
        RAISE EXCEPTION 'fn_pilot_mark: payload is % bytes, over the limit of % bytes', v_bytes, v_max
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Stage a smaller payload, or store the content elsewhere and pass its reference as content_ref; the limit is pilot.cut.payload_max_bytes.';
    END IF;
    IF fn_pilot_mark.collection IS DISTINCT FROM v_pilot
       AND NOT EXISTS (SELECT 1 FROM iu_core.iu_staging_record AS r
                        WHERE r.collection = fn_pilot_mark.collection) THEN
        RAISE EXCEPTION 'fn_pilot_mark: collection % is unknown', quote_nullable(left(fn_pilot_mark.collection, 200))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('The pilot collection is %s (pilot.cut.collection); other known collections are those that already have staged records (conveyor staging list).',
                                quote_nullable(v_pilot));
    END IF;

    v_answer := iu_core.fn_iu_op_mark(collection => fn_pilot_mark.collection,
                                      record_key => fn_pilot_mark.record_key,
                                      actor => fn_pilot_mark.actor,
                                      content_ref => fn_pilot_mark.content_ref);
    IF (v_answer -> 'already') = 'true'::jsonb THEN
        RAISE EXCEPTION 'fn_pilot_mark: record_key % is already staged in collection % (record %, status %)',
                        quote_literal(left(fn_pilot_mark.record_key, 200)),
                        quote_literal(fn_pilot_mark.collection),
                        v_answer ->> 'record_id', v_answer ->> 'status'
            USING ERRCODE = 'unique_violation',
                  HINT = 'Use another key, or look at the staged record with `conveyor staging show ID`.';
    END IF;

    v_sum := encode(sha256(convert_to(fn_pilot_mark.payload, 'UTF8')), 'hex');
    INSERT INTO pilot_staged_payload (record_id, payload, payload_bytes, checksum)
    VALUES ((v_answer ->> 'record_id')::bigint, fn_pilot_mark.payload, v_bytes, v_sum);
    RETURN v_answer || jsonb_build_object('payload_bytes', v_bytes, 'checksum', v_sum);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_pilot_mark(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_pilot_mark(text, text, text, text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_pilot_mark(text, text, text, text, text) IS
    'Pilot MARK: stage (collection, record_key) with iu_core.fn_iu_op_mark and keep its payload (text, at most pilot.cut.payload_max_bytes) and sha256. Unknown collection or oversized payload: 22023; key already staged: 23505; nothing written. Answer: fn_iu_op_mark''s plus payload_bytes, checksum. Example: SELECT conveyor.fn_pilot_mark(''pilot'', ''k-1'', ''hello'', ''alice'')';
