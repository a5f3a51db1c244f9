-- iu_core.fn_iu_op_mark: stage a record of a collection (status marked) and emit
-- staging.record_marked in the same transaction. Marking a (collection, record_key) that is
-- already staged, whatever its status, answers ok with already:true and changes nothing.
-- Answer: {"ok": true, "already": false, "op": "mark", "record_id", "collection",
--          "record_key", "status": "marked", "event_id"} (event_id null if the route is off).
CREATE OR REPLACE FUNCTION iu_core.fn_iu_op_mark(
    collection  text,
    record_key  text,
    actor       text,
    content_ref text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, iu_core, conveyor, pg_temp
AS $$
DECLARE
    v_id       bigint;
    v_status   text;
    v_event_id bigint;
BEGIN
    IF fn_iu_op_mark.collection IS NULL OR btrim(fn_iu_op_mark.collection) = ''
       OR char_length(fn_iu_op_mark.collection) > 200 THEN
        RAISE EXCEPTION 'fn_iu_op_mark: collection must be 1 to 200 characters, got %',
                        quote_nullable(left(fn_iu_op_mark.collection, 40))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the collection the record belongs to.';
    END IF;
    IF fn_iu_op_mark.record_key IS NULL OR btrim(fn_iu_op_mark.record_key) = ''
       OR char_length(fn_iu_op_mark.record_key) > 1000 THEN
        RAISE EXCEPTION 'fn_iu_op_mark: record_key must be 1 to 1000 characters, got %',
                        quote_nullable(left(fn_iu_op_mark.record_key, 40))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the record''s key within its collection.';
    END IF;
    IF fn_iu_op_mark.actor IS NULL OR btrim(fn_iu_op_mark.actor) = ''
       OR char_length(fn_iu_op_mark.actor) > 200 THEN
        RAISE EXCEPTION 'fn_iu_op_mark: actor must be 1 to 200 characters, got %',
                        quote_nullable(left(fn_iu_op_mark.actor, 40))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name who performs the operation, e.g. an operator or worker name.';
    END IF;

    INSERT INTO iu_core.iu_staging_record AS r
           (collection, record_key, status, content_ref, marked_by, marked_at)
    VALUES (fn_iu_op_mark.collection, fn_iu_op_mark.record_key, 'marked',
            fn_iu_op_mark.content_ref, fn_iu_op_mark.actor, now())
    ON CONFLICT ON CONSTRAINT iu_staging_record_collection_record_key_key DO NOTHING
    RETURNING r.id INTO v_id;

    IF v_id IS NULL THEN
        SELECT r.id, r.status INTO v_id, v_status
          FROM iu_core.iu_staging_record AS r
         WHERE r.collection = fn_iu_op_mark.collection
           AND r.record_key = fn_iu_op_mark.record_key;
        RETURN jsonb_build_object('ok', true, 'already', true, 'op', 'mark',
                                  'record_id', v_id, 'status', v_status);
    END IF;

    v_event_id := iu_core.fn_iu_op_emit(op => 'mark', record_id => v_id,
                                        collection => fn_iu_op_mark.collection,
                                        record_key => fn_iu_op_mark.record_key,
                                        actor => fn_iu_op_mark.actor);
    RETURN jsonb_build_object('ok', true, 'already', false, 'op', 'mark', 'record_id', v_id,
                              'collection', fn_iu_op_mark.collection,
                              'record_key', fn_iu_op_mark.record_key, 'status', 'marked',
                              'event_id', v_event_id);
END;
$$;
REVOKE ALL ON FUNCTION iu_core.fn_iu_op_mark(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iu_core.fn_iu_op_mark(text, text, text, text)
    TO conveyor_admin, conveyor_worker;
COMMENT ON FUNCTION iu_core.fn_iu_op_mark(text, text, text, text) IS
    'MARK: stage (collection, record_key) with status marked and emit staging.record_marked. Already staged: {ok, already:true, record_id, status}. Example: SELECT iu_core.fn_iu_op_mark(''contracts'', ''c-42'', ''alice'', ''s3://bucket/c-42'')';
