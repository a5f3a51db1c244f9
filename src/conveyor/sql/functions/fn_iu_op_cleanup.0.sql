-- iu_core.fn_iu_op_cleanup: CLEANUP: verified → cleaned, emits staging.record_cleaned
-- in the same transaction. Repeating it on a record already past the step answers ok with
-- already:true; a record not yet at the step before it is refused with invalid_transition.
-- Answer: {"ok": true, "already": false, "op": "cleanup", "record_id", "collection",
--          "record_key", "status", "event_id"} | {"ok": true, "already": true, "op",
--          "record_id", "status"} | {"refused": true, "reason": "invalid_transition" |
--          "record_not_found", "op", "record_id", "status", "expected"}.
CREATE OR REPLACE FUNCTION iu_core.fn_iu_op_cleanup(
    record_id bigint,
    actor     text
) RETURNS jsonb
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, iu_core, conveyor, pg_temp
AS $$
    SELECT iu_core.fn_iu_op_transition(
        record_id => fn_iu_op_cleanup.record_id, actor => fn_iu_op_cleanup.actor, op => 'cleanup')
$$;
REVOKE ALL ON FUNCTION iu_core.fn_iu_op_cleanup(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION iu_core.fn_iu_op_cleanup(bigint, text)
    TO conveyor_admin, conveyor_worker;
COMMENT ON FUNCTION iu_core.fn_iu_op_cleanup(bigint, text) IS
    'CLEANUP: verified → cleaned, emits staging.record_cleaned. Repeat past the step: {ok, already:true}; wrong state: {refused, reason: invalid_transition, status}. Example: SELECT iu_core.fn_iu_op_cleanup(record_id => 1, actor => ''alice'')';
