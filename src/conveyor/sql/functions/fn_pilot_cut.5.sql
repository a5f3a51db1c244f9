-- fn_pilot_cut: CUT one pilot record, exactly once: write the staged payload into
-- pilot_cut_target and move the record approved → cut with iu_core.fn_iu_op_cut (unchanged),
-- which emits staging.record_consumed. Both writes are in the caller's transaction, which for the
-- built-in handler is also the one completing the job: a worker that dies before COMMIT leaves
-- neither, and the retried job cuts once. A record already past the step answers fn_iu_op_cut's
-- {ok, already: true} and writes nothing (pilot_cut_target's primary key would refuse a second
-- row anyway). Refusals: pilot_cut_disabled, record_not_found, not_pilot_collection,
-- payload_missing (the record was marked without a pilot payload), invalid_transition.
-- Answer: fn_iu_op_cut's answer plus "checksum" (sha256 hex of the written payload) on a cut.
CREATE OR REPLACE FUNCTION conveyor.fn_pilot_cut(
    record_id bigint,
    actor     text,
    job_id    bigint DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_record jsonb;
    v_sum    text;
BEGIN
    v_record := fn_pilot__lock(fn_pilot_cut.record_id, fn_pilot_cut.actor, 'cut');
    IF v_record ? 'refused' OR v_record ->> 'status' <> 'approved' THEN
        -- a refusal, a repeat (already) or a record not yet approved (invalid_transition)
        RETURN CASE WHEN v_record ? 'refused' THEN v_record
                    ELSE iu_core.fn_iu_op_cut(record_id => fn_pilot_cut.record_id,
                                              actor => fn_pilot_cut.actor) END;
    END IF;

    INSERT INTO pilot_cut_target AS t
           (record_id, collection, record_key, payload, checksum, cut_by, job_id)
    SELECT sp.record_id, v_record ->> 'collection', v_record ->> 'record_key', sp.payload,
           encode(sha256(convert_to(sp.payload, 'UTF8')), 'hex'), fn_pilot_cut.actor,
           fn_pilot_cut.job_id
      FROM pilot_staged_payload AS sp
     WHERE sp.record_id = fn_pilot_cut.record_id
       AND sp.payload IS NOT NULL
    RETURNING t.checksum INTO v_sum;
    IF v_sum IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'payload_missing', 'op', 'cut',
                                  'record_id', fn_pilot_cut.record_id);
    END IF;

    RETURN iu_core.fn_iu_op_cut(record_id => fn_pilot_cut.record_id, actor => fn_pilot_cut.actor,
                                cut_target => 'conveyor.pilot_cut_target')
           || jsonb_build_object('checksum', v_sum);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_pilot_cut(bigint, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_pilot_cut(bigint, text, bigint)
    TO conveyor_admin, conveyor_worker;
COMMENT ON FUNCTION conveyor.fn_pilot_cut(bigint, text, bigint) IS
    'Pilot CUT (job staging.cut): copy the staged payload into pilot_cut_target and call iu_core.fn_iu_op_cut, in the caller''s transaction; a repeat answers {ok, already:true} and writes nothing. Refusals pilot_cut_disabled, record_not_found, not_pilot_collection, payload_missing, invalid_transition. Example: SELECT conveyor.fn_pilot_cut(record_id => 1, actor => ''worker-1'')';
