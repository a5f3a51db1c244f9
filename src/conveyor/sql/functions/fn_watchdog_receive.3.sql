-- fn_watchdog_receive: the D31 watchdog's receiver. Reads the outbox through its own cursor
-- ('watchdog') and turns every system/queue_worker_silent and system/queue_worker_recovered
-- event into one queue_watchdog_alert row (alert 'silent' or 'recovered'); other events are
-- passed over. The cursor advances in the same transaction as the inserts, so an alert is never
-- lost or doubled by a crash between the two. Idempotent and safe concurrently: the cursor row is
-- locked first (a second receiver waits, then reads after the first one's advance), and alerts
-- are unique per event_id (a replayed event inserts nothing). Events without a component in
-- their payload are passed over. Gated by queue.heartbeat.enabled.
-- Answer: {"ok": true, "received": <alerts inserted>, "read": <events passed>, "more": <a full
-- batch was read>} | refusal heartbeat_disabled.
CREATE OR REPLACE FUNCTION conveyor.fn_watchdog_receive(
    batch integer DEFAULT 100
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    c_consumer CONSTANT text := 'watchdog';
    v_batch    integer := coalesce(fn_watchdog_receive.batch, 100);
    v_read     integer;
    v_received integer;
    v_txid     xid8;
    v_id       bigint;
BEGIN
    IF NOT fn_config_enabled('queue.heartbeat.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'heartbeat_disabled',
                                  'flag', 'queue.heartbeat.enabled');
    END IF;
    IF v_batch NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'fn_watchdog_receive: batch is %; it must be from 1 to 10000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call again for the next events.';
    END IF;

    INSERT INTO event_outbox_cursor AS c (consumer) VALUES (c_consumer)
    ON CONFLICT ON CONSTRAINT event_outbox_cursor_pkey DO NOTHING;
    PERFORM 1 FROM event_outbox_cursor AS c WHERE c.consumer = c_consumer FOR UPDATE;

    WITH ev AS MATERIALIZED (
        SELECT r.id, r.txid, r.event_type, r.payload, r.created_at
          FROM fn_outbox_read(consumer => c_consumer, batch => v_batch) AS r
    ), inserted AS (
        INSERT INTO queue_watchdog_alert AS a (event_id, component, alert, raised_at)
        SELECT ev.id, ev.payload ->> 'component',
               CASE ev.event_type WHEN 'system/queue_worker_silent' THEN 'silent' ELSE 'recovered' END,
               ev.created_at
          FROM ev
         WHERE ev.event_type IN ('system/queue_worker_silent', 'system/queue_worker_recovered')
           AND jsonb_typeof(ev.payload -> 'component') = 'string'
         ORDER BY ev.txid, ev.id
        ON CONFLICT ON CONSTRAINT queue_watchdog_alert_event_id_key DO NOTHING
        RETURNING a.id
    )
    SELECT (SELECT count(*) FROM ev),
           (SELECT count(*) FROM inserted),
           (SELECT ev.txid FROM ev ORDER BY ev.txid DESC, ev.id DESC LIMIT 1),
           (SELECT ev.id FROM ev ORDER BY ev.txid DESC, ev.id DESC LIMIT 1)
      INTO v_read, v_received, v_txid, v_id;

    IF v_read > 0 THEN
        PERFORM fn_outbox_advance(consumer => c_consumer, last_txid => v_txid, last_id => v_id);
    END IF;
    RETURN jsonb_build_object('ok', true, 'received', v_received, 'read', v_read,
                              'more', v_read = v_batch);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_watchdog_receive(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_watchdog_receive(integer) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_watchdog_receive(integer) IS
    'D31 watchdog receiver: reads up to batch (1..10000, default 100) outbox events through cursor ''watchdog'' and records each system/queue_worker_silent / _recovered event as one queue_watchdog_alert (unique per event), advancing the cursor in the same transaction. Idempotent, safe concurrently. Answer {ok, received, read, more}; refusal heartbeat_disabled. Example: SELECT conveyor.fn_watchdog_receive()';
