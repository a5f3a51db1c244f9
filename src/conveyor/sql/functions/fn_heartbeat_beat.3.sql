-- fn_heartbeat_beat: a component says it is alive. Stamps last_beat_at with clock_timestamp(),
-- so beats inside one long transaction still advance (RELIABILITY #40). With an epoch, only the
-- current incarnation may beat: an older one (a process that was replaced under the same name)
-- is refused with epoch_superseded and cannot keep the new one looking alive. metadata, when
-- given, is merged into the stored metadata (top-level keys replaced). Gated by
-- queue.heartbeat.enabled.
-- Answer: {"ok": true, "component", "last_beat_at"} | refusals heartbeat_disabled,
-- not_registered (unknown or deregistered: register again), epoch_superseded (with "component").
CREATE OR REPLACE FUNCTION conveyor.fn_heartbeat_beat(
    component text,
    epoch     uuid  DEFAULT NULL,
    metadata  jsonb DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_metadata jsonb;
    v_at       timestamptz;
    v_epoch    uuid;
BEGIN
    IF NOT fn_config_enabled('queue.heartbeat.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'heartbeat_disabled',
                                  'flag', 'queue.heartbeat.enabled');
    END IF;
    PERFORM fn_heartbeat__component('fn_heartbeat_beat', fn_heartbeat_beat.component);
    IF fn_heartbeat_beat.metadata IS NOT NULL THEN
        v_metadata := fn_heartbeat__metadata('fn_heartbeat_beat', fn_heartbeat_beat.metadata);
    END IF;

    UPDATE queue_heartbeat AS hb
       SET last_beat_at = clock_timestamp(),
           metadata = CASE WHEN v_metadata IS NULL THEN hb.metadata ELSE hb.metadata || v_metadata END
     WHERE hb.component = fn_heartbeat_beat.component
       AND hb.deregistered_at IS NULL
       AND (fn_heartbeat_beat.epoch IS NULL OR hb.epoch = fn_heartbeat_beat.epoch)
    RETURNING hb.last_beat_at INTO v_at;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'component', fn_heartbeat_beat.component,
                                  'last_beat_at', v_at);
    END IF;

    SELECT hb.epoch INTO v_epoch
      FROM queue_heartbeat AS hb
     WHERE hb.component = fn_heartbeat_beat.component AND hb.deregistered_at IS NULL;
    IF FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'epoch_superseded',
                                  'component', fn_heartbeat_beat.component);
    END IF;
    RETURN jsonb_build_object('refused', true, 'reason', 'not_registered',
                              'component', fn_heartbeat_beat.component);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_heartbeat_beat(text, uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_heartbeat_beat(text, uuid, jsonb)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_heartbeat_beat(text, uuid, jsonb) IS
    'Beat: last_beat_at = clock_timestamp(). epoch (from fn_heartbeat_register) fences an old incarnation; metadata (optional) is merged in. Answer {ok, component, last_beat_at}; refusals heartbeat_disabled, not_registered (unknown or deregistered), epoch_superseded. Example: SELECT conveyor.fn_heartbeat_beat(''host1:4242'', ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'')';
