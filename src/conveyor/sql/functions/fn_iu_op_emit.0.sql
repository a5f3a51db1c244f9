-- iu_core.fn_iu_op_emit: emit the event a staging operation's route names, in the caller's
-- transaction. Internal (no grants): called only by the fn_iu_op_* functions, which run as
-- the owner. The route row decides the event type; a disabled or missing route emits nothing
-- and returns NULL, so an operator can silence one operation's events without code changes.
CREATE OR REPLACE FUNCTION iu_core.fn_iu_op_emit(
    op         text,
    record_id  bigint,
    collection text,
    record_key text,
    actor      text
) RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, iu_core, conveyor, pg_temp
AS $$
DECLARE
    v_event_type text;
BEGIN
    SELECT r.target_event_type INTO v_event_type
      FROM conveyor.iu_sql_event_route AS r
     WHERE r.route = 'iu_staging_record.' || fn_iu_op_emit.op
       AND r.enabled;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN conveyor.fn_outbox_emit(
        event_type => v_event_type,
        payload => jsonb_build_object('record_id', fn_iu_op_emit.record_id,
                                      'collection', fn_iu_op_emit.collection,
                                      'record_key', fn_iu_op_emit.record_key,
                                      'actor', fn_iu_op_emit.actor),
        source => 'iu_core.fn_iu_op_' || fn_iu_op_emit.op);
END;
$$;
REVOKE ALL ON FUNCTION iu_core.fn_iu_op_emit(text, bigint, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION iu_core.fn_iu_op_emit(text, bigint, text, text, text) IS
    'Private: emit the event of route iu_staging_record.<op> with payload {record_id, collection, record_key, actor}; NULL when the route is disabled or missing';
