-- fn_outbox_emit: append one event to event_outbox inside the caller's transaction and return
-- its id. The event commits or rolls back with the caller's own writes (transactional outbox);
-- readers see it only once every transaction older than it has finished (see fn_outbox_read).
-- The checks and the insert are fn_outbox__append, shared with the phase-4 version.
CREATE OR REPLACE FUNCTION conveyor.fn_outbox_emit(
    event_type text,
    payload    jsonb DEFAULT '{}',
    source     text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    RETURN fn_outbox__append(fn_outbox_emit.event_type, fn_outbox_emit.payload, fn_outbox_emit.source);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_outbox_emit(text, jsonb, text) FROM PUBLIC;
-- Not conveyor_worker: events drive dispatch and the staging pipeline, so a worker must not
-- forge them (its staging operations emit through fn_iu_op_*, which run as the owner).
GRANT EXECUTE ON FUNCTION conveyor.fn_outbox_emit(text, jsonb, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_outbox_emit(text, jsonb, text) IS
    'Append an event (registered type, object payload) in the caller''s transaction; returns its id. Unregistered type, non-object payload or one over outbox.payload.max_bytes: SQLSTATE 22023. Example: SELECT conveyor.fn_outbox_emit(''staging.record_marked'', ''{"record_id": 1}'')';
