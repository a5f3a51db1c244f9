-- fn_heartbeat_deregister: a graceful stop. The component leaves v_queue_health and is never
-- reported silent for this incarnation (its row stays in queue_heartbeat as history). If it was
-- in an open silence episode, the next stale check closes it with system/queue_worker_recovered
-- (deregistered: true), so red zones do not keep a component that left. With an epoch, only the
-- current incarnation may deregister itself (a late shutdown of a replaced process must not
-- take the new one off the board); an operator passes no epoch to remove a dead component.
-- Gated by queue.heartbeat.enabled.
-- Answer: {"ok": true, "component", "deregistered_at", "already": <was it deregistered before>}
-- | refusals heartbeat_disabled, not_registered, epoch_superseded.
CREATE OR REPLACE FUNCTION conveyor.fn_heartbeat_deregister(
    component text,
    epoch     uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_row queue_heartbeat%ROWTYPE;
    v_at  timestamptz;
BEGIN
    IF NOT fn_config_enabled('queue.heartbeat.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'heartbeat_disabled',
                                  'flag', 'queue.heartbeat.enabled');
    END IF;
    PERFORM fn_heartbeat__component('fn_heartbeat_deregister', fn_heartbeat_deregister.component);

    SELECT hb.* INTO v_row
      FROM queue_heartbeat AS hb
     WHERE hb.component = fn_heartbeat_deregister.component
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_registered',
                                  'component', fn_heartbeat_deregister.component);
    END IF;
    IF fn_heartbeat_deregister.epoch IS NOT NULL AND v_row.epoch <> fn_heartbeat_deregister.epoch THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'epoch_superseded',
                                  'component', fn_heartbeat_deregister.component);
    END IF;
    IF v_row.deregistered_at IS NOT NULL THEN
        RETURN jsonb_build_object('ok', true, 'component', fn_heartbeat_deregister.component,
                                  'deregistered_at', v_row.deregistered_at, 'already', true);
    END IF;

    v_at := clock_timestamp();
    UPDATE queue_heartbeat AS hb
       SET deregistered_at = v_at
     WHERE hb.component = fn_heartbeat_deregister.component;
    RETURN jsonb_build_object('ok', true, 'component', fn_heartbeat_deregister.component,
                              'deregistered_at', v_at, 'already', false);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_heartbeat_deregister(text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_heartbeat_deregister(text, uuid)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_heartbeat_deregister(text, uuid) IS
    'Graceful stop: deregistered_at = clock_timestamp(); the component leaves v_queue_health and is never reported silent (an open episode is closed by the next stale check). epoch fences an old incarnation; no epoch = operator removal. Answer {ok, component, deregistered_at, already}; refusals heartbeat_disabled, not_registered, epoch_superseded. Example: SELECT conveyor.fn_heartbeat_deregister(''host1:4242'', ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'')';
