-- fn_red_zones_receive: the D43 red-zones receiver. Reads the outbox through its own cursor
-- ('red_zones') in (txid, id) order: system/queue_worker_silent puts the component in
-- queue_red_zone (since = the event's time), system/queue_worker_recovered takes it out; other
-- events are passed over. The cursor advances in the same transaction. Idempotent (events apply
-- in order, so reading them again ends in the same state) and safe concurrently (the cursor row
-- is locked first). Events without a component are passed over. Gated by
-- queue.heartbeat.enabled.
-- Answer: {"ok": true, "received": <silent/recovered events applied>, "entered", "left",
-- "read": <events passed>, "more"} | refusal heartbeat_disabled.
CREATE OR REPLACE FUNCTION conveyor.fn_red_zones_receive(
    batch integer DEFAULT 100
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    c_consumer CONSTANT text := 'red_zones';
    v_batch    integer := coalesce(fn_red_zones_receive.batch, 100);
    v_event    record;
    v_read     integer := 0;
    v_received integer := 0;
    v_entered  integer := 0;
    v_left     integer := 0;
    v_count    integer;
    v_txid     xid8;
    v_id       bigint;
BEGIN
    IF NOT fn_config_enabled('queue.heartbeat.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'heartbeat_disabled',
                                  'flag', 'queue.heartbeat.enabled');
    END IF;
    IF v_batch NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'fn_red_zones_receive: batch is %; it must be from 1 to 10000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call again for the next events.';
    END IF;

    INSERT INTO event_outbox_cursor AS c (consumer) VALUES (c_consumer)
    ON CONFLICT ON CONSTRAINT event_outbox_cursor_pkey DO NOTHING;
    PERFORM 1 FROM event_outbox_cursor AS c WHERE c.consumer = c_consumer FOR UPDATE;

    FOR v_event IN
        SELECT r.id, r.txid, r.event_type, r.payload ->> 'component' AS component, r.created_at,
               jsonb_typeof(r.payload -> 'component') = 'string' AS has_component
          FROM fn_outbox_read(consumer => c_consumer, batch => v_batch) AS r
         ORDER BY r.txid, r.id
    LOOP
        v_read := v_read + 1;
        v_txid := v_event.txid;
        v_id := v_event.id;
        CONTINUE WHEN NOT coalesce(v_event.has_component, false);
        IF v_event.event_type = 'system/queue_worker_silent' THEN
            INSERT INTO queue_red_zone AS rz (component, since, event_id)
            VALUES (v_event.component, v_event.created_at, v_event.id)
            ON CONFLICT ON CONSTRAINT queue_red_zone_pkey DO UPDATE
               SET since = excluded.since, event_id = excluded.event_id;
            v_received := v_received + 1;
            v_entered := v_entered + 1;
        ELSIF v_event.event_type = 'system/queue_worker_recovered' THEN
            DELETE FROM queue_red_zone AS rz WHERE rz.component = v_event.component;
            GET DIAGNOSTICS v_count = ROW_COUNT;
            v_received := v_received + 1;
            v_left := v_left + v_count;
        END IF;
    END LOOP;

    IF v_read > 0 THEN
        PERFORM fn_outbox_advance(consumer => c_consumer, last_txid => v_txid, last_id => v_id);
    END IF;
    RETURN jsonb_build_object('ok', true, 'received', v_received, 'entered', v_entered,
                              'left', v_left, 'read', v_read, 'more', v_read = v_batch);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_red_zones_receive(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_red_zones_receive(integer) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_red_zones_receive(integer) IS
    'D43 red-zones receiver: reads up to batch (1..10000, default 100) outbox events through cursor ''red_zones''; system/queue_worker_silent puts the component in queue_red_zone, system/queue_worker_recovered removes it; cursor advanced in the same transaction. Idempotent, safe concurrently. Answer {ok, received, entered, left, read, more}; refusal heartbeat_disabled. Example: SELECT conveyor.fn_red_zones_receive()';
