-- fn_pilot_verify_cut: VERIFY_CUT one pilot record: the sha256 of what pilot_cut_target holds
-- must equal the checksum taken when the payload was staged; then iu_core.fn_iu_op_verify_cut
-- (unchanged) moves it cut → verified and emits staging.record_verified. A mismatch (or a
-- missing target row) is refused with checksum_mismatch and changes nothing: the built-in
-- handler turns it into a permanent failure, so the job lands in the dead letter queue with the
-- reason. A repeat answers {ok, already: true}. Other refusals as fn_pilot_cut.
CREATE OR REPLACE FUNCTION conveyor.fn_pilot_verify_cut(
    record_id bigint,
    actor     text
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_record   jsonb;
    v_staged   text;
    v_written  text;
BEGIN
    v_record := fn_pilot__lock(fn_pilot_verify_cut.record_id, fn_pilot_verify_cut.actor, 'verify_cut');
    IF v_record ? 'refused' THEN
        RETURN v_record;
    END IF;
    IF v_record ->> 'status' <> 'cut' THEN
        RETURN iu_core.fn_iu_op_verify_cut(record_id => fn_pilot_verify_cut.record_id,
                                           actor => fn_pilot_verify_cut.actor);
    END IF;

    SELECT sp.checksum INTO v_staged
      FROM pilot_staged_payload AS sp WHERE sp.record_id = fn_pilot_verify_cut.record_id;
    SELECT encode(sha256(convert_to(t.payload, 'UTF8')), 'hex') INTO v_written
      FROM pilot_cut_target AS t WHERE t.record_id = fn_pilot_verify_cut.record_id;
    IF v_written IS NULL OR v_staged IS DISTINCT FROM v_written THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'checksum_mismatch',
                                  'op', 'verify_cut', 'record_id', fn_pilot_verify_cut.record_id,
                                  'staged_checksum', v_staged,
                                  'target_checksum', coalesce(v_written, '(no target row)'));
    END IF;

    RETURN iu_core.fn_iu_op_verify_cut(record_id => fn_pilot_verify_cut.record_id,
                                       actor => fn_pilot_verify_cut.actor)
           || jsonb_build_object('checksum', v_written);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_pilot_verify_cut(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_pilot_verify_cut(bigint, text)
    TO conveyor_admin, conveyor_worker;
COMMENT ON FUNCTION conveyor.fn_pilot_verify_cut(bigint, text) IS
    'Pilot VERIFY_CUT (job staging.verify_cut): compare the sha256 of pilot_cut_target''s payload with the staged checksum, then call iu_core.fn_iu_op_verify_cut. Mismatch: {refused, reason: checksum_mismatch, staged_checksum, target_checksum}, nothing changed. Example: SELECT conveyor.fn_pilot_verify_cut(record_id => 1, actor => ''worker-1'')';
