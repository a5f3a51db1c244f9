-- fn_pilot__lock: what every pilot step (cut, verify_cut, cleanup) checks first, in order: the
-- arguments (bad input raises 22023), the flag pilot.cut.enabled (refusal pilot_cut_disabled with
-- retry_in_seconds, the pause the worker snoozes the job for), the record (locked FOR UPDATE, so
-- two attempts at the same step serialize and the second one sees the first one's result) and its
-- collection (only pilot.cut.collection is ever touched: refusal not_pilot_collection).
-- Answer: {"ok": true, "record_id", "collection", "record_key", "status"} or a refusal.
-- Private: no EXECUTE grant; called by the SECURITY DEFINER step functions.
CREATE OR REPLACE FUNCTION conveyor.fn_pilot__lock(
    record_id bigint,
    actor     text,
    op        text
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_fn     text := 'fn_pilot_' || fn_pilot__lock.op;
    v_record iu_core.iu_staging_record%ROWTYPE;
    v_pilot  text;
BEGIN
    IF fn_pilot__lock.record_id IS NULL THEN
        RAISE EXCEPTION '%: record_id is required', v_fn
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the staging record id (the job payload''s record_id).';
    END IF;
    IF fn_pilot__lock.actor IS NULL OR btrim(fn_pilot__lock.actor) = ''
       OR char_length(fn_pilot__lock.actor) > 200 THEN
        RAISE EXCEPTION '%: actor must be 1 to 200 characters, got %', v_fn,
                        quote_nullable(left(fn_pilot__lock.actor, 40))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name who performs the step, e.g. the worker''s name.';
    END IF;
    IF NOT fn_config_enabled('pilot.cut.enabled') THEN
        -- 5 s: long enough not to spin on a switched-off pilot, short enough to resume promptly.
        RETURN jsonb_build_object('refused', true, 'reason', 'pilot_cut_disabled',
                                  'flag', 'pilot.cut.enabled',
                                  'record_id', fn_pilot__lock.record_id, 'retry_in_seconds', 5);
    END IF;

    SELECT r.* INTO v_record
      FROM iu_core.iu_staging_record AS r
     WHERE r.id = fn_pilot__lock.record_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'record_not_found',
                                  'op', fn_pilot__lock.op, 'record_id', fn_pilot__lock.record_id);
    END IF;
    v_pilot := fn_config_get('pilot.cut.collection') #>> '{}';
    IF v_record.collection IS DISTINCT FROM v_pilot THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_pilot_collection',
                                  'op', fn_pilot__lock.op, 'record_id', v_record.id,
                                  'collection', v_record.collection, 'pilot_collection', v_pilot);
    END IF;
    RETURN jsonb_build_object('ok', true, 'record_id', v_record.id,
                              'collection', v_record.collection,
                              'record_key', v_record.record_key, 'status', v_record.status);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_pilot__lock(bigint, text, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_pilot__lock(bigint, text, text) IS
    'Private: validate a pilot step''s arguments, gate on pilot.cut.enabled, lock the staging record and check it is in pilot.cut.collection';
