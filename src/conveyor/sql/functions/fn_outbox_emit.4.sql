-- fn_outbox_emit, phase 4 version (phase 4's ddl.down restores the .0 file): as phase 0's (the
-- shared fn_outbox__append), and when the NOTIFY bridge is on it also sends
-- one `NOTIFY conveyor_events` (delivered at commit, merged by PostgreSQL within a transaction)
-- so a listening orchestrator dispatches at once instead of at its next tick. The notification
-- carries nothing the orchestrator relies on: the outbox cursor is the truth. Kept in common
-- with the .0 file: the signature, header and grants (a version is a whole CREATE; ../README.md).
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
DECLARE
    v_id bigint;
BEGIN
    v_id := fn_outbox__append(fn_outbox_emit.event_type, fn_outbox_emit.payload, fn_outbox_emit.source);
    IF fn_config_enabled('queue.notify.bridge_enabled') THEN
        PERFORM pg_notify('conveyor_events', '');
    END IF;
    RETURN v_id;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_outbox_emit(text, jsonb, text) FROM PUBLIC;
-- Not conveyor_worker: events drive dispatch and the staging pipeline, so a worker must not
-- forge them (its staging operations emit through fn_iu_op_*, which run as the owner).
GRANT EXECUTE ON FUNCTION conveyor.fn_outbox_emit(text, jsonb, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_outbox_emit(text, jsonb, text) IS
    'Append an event (registered type, object payload) in the caller''s transaction; returns its id. With queue.notify.bridge_enabled, also NOTIFY conveyor_events (a wake-up hint for dispatch). Unregistered type, non-object payload or one over outbox.payload.max_bytes: SQLSTATE 22023. Example: SELECT conveyor.fn_outbox_emit(''staging.record_marked'', ''{"record_id": 1}'')';
