-- fn_pilot_cleanup: CLEANUP one pilot record: clear the staged payload (the row stays, with its
-- checksum and cleared_at, as the record of what was staged) and call iu_core.fn_iu_op_cleanup
-- (unchanged), verified → cleaned, which emits staging.record_cleaned. A repeat answers
-- {ok, already: true} and changes nothing. Refusals as fn_pilot_cut.
CREATE OR REPLACE FUNCTION conveyor.fn_pilot_cleanup(
    record_id bigint,
    actor     text
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_record jsonb;
BEGIN
    v_record := fn_pilot__lock(fn_pilot_cleanup.record_id, fn_pilot_cleanup.actor, 'cleanup');
    IF v_record ? 'refused' THEN
        RETURN v_record;
    END IF;
    IF v_record ->> 'status' = 'verified' THEN
        UPDATE pilot_staged_payload AS sp
           SET payload = NULL, cleared_at = now()
         WHERE sp.record_id = fn_pilot_cleanup.record_id;
    END IF;
    RETURN iu_core.fn_iu_op_cleanup(record_id => fn_pilot_cleanup.record_id,
                                    actor => fn_pilot_cleanup.actor);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_pilot_cleanup(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_pilot_cleanup(bigint, text)
    TO conveyor_admin, conveyor_worker;
COMMENT ON FUNCTION conveyor.fn_pilot_cleanup(bigint, text) IS
    'Pilot CLEANUP (job staging.cleanup): clear the staged payload and call iu_core.fn_iu_op_cleanup; a repeat answers {ok, already:true}. Refusals pilot_cut_disabled, record_not_found, not_pilot_collection, invalid_transition. Example: SELECT conveyor.fn_pilot_cleanup(record_id => 1, actor => ''worker-1'')';
