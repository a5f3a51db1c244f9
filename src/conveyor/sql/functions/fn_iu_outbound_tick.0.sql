-- fn_iu_outbound_tick: one round of an outbound worker. Reads the events past the worker's
-- cursor, delivers them to its sink, advances the cursor and stamps last_run_at with
-- clock_timestamp() (also when there was nothing to deliver: it is the worker's liveness
-- stamp). The worker row is locked first, so concurrent ticks of one worker run one after
-- the other and each event is delivered once.
-- Sinks: 'table' inserts into iu_outbound_delivery (unique per worker and event);
-- 'log' returns the events in the answer for the caller to log before it commits.
-- Answer: {"ok": true, "worker", "sink", "delivered", "last_run_at", "events": [...] (log
-- sink only)} | {"refused": true, "reason": "outbound_worker_disabled", "worker"}.
CREATE OR REPLACE FUNCTION conveyor.fn_iu_outbound_tick(
    name  text DEFAULT 'iu_outbound_default',
    batch integer DEFAULT 500
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_name      text := COALESCE(fn_iu_outbound_tick.name, 'iu_outbound_default');
    v_batch     integer := COALESCE(fn_iu_outbound_tick.batch, 500);
    v_worker    iu_outbound_worker%ROWTYPE;
    v_events    jsonb;
    v_read      integer;
    v_delivered integer;
    v_last_txid xid8;
    v_last_id   bigint;
    v_now       timestamptz;
    v_answer    jsonb;
BEGIN
    IF v_batch < 1 OR v_batch > 10000 THEN
        RAISE EXCEPTION 'fn_iu_outbound_tick: batch % is outside 1..10000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Deliver at most 10000 events per tick; tick again for more.';
    END IF;
    SELECT w.* INTO v_worker
      FROM iu_outbound_worker AS w
     WHERE w.name = v_name
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fn_iu_outbound_tick: there is no outbound worker named %',
                        quote_literal(v_name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Workers are rows of conveyor.iu_outbound_worker; the platform''s '
                         'is iu_outbound_default.';
    END IF;
    IF NOT v_worker.enabled THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'outbound_worker_disabled',
                                  'worker', v_name);
    END IF;

    SELECT COALESCE(jsonb_agg(jsonb_build_object(
                        'id', r.id, 'txid', r.txid::text, 'event_type', r.event_type,
                        'payload', r.payload, 'source', r.source, 'created_at', r.created_at)
                        ORDER BY r.txid, r.id), '[]'::jsonb),
           count(*),
           (array_agg(r.txid ORDER BY r.txid DESC, r.id DESC))[1],
           (array_agg(r.id ORDER BY r.txid DESC, r.id DESC))[1]
      INTO v_events, v_read, v_last_txid, v_last_id
      FROM conveyor.fn_outbox_read(consumer => v_worker.consumer, batch => v_batch) AS r;

    IF v_worker.sink = 'table' THEN
        INSERT INTO iu_outbound_delivery AS d (worker, event_id, event_type, payload)
        SELECT v_name, (e.value ->> 'id')::bigint, e.value ->> 'event_type', e.value -> 'payload'
          FROM jsonb_array_elements(v_events) WITH ORDINALITY AS e(value, ordinality)
         ORDER BY e.ordinality
        ON CONFLICT ON CONSTRAINT iu_outbound_delivery_worker_event_id_key DO NOTHING;
        GET DIAGNOSTICS v_delivered = ROW_COUNT;
    ELSE
        v_delivered := v_read;
    END IF;

    IF v_read > 0 THEN
        PERFORM conveyor.fn_outbox_advance(consumer => v_worker.consumer,
                                           last_txid => v_last_txid, last_id => v_last_id);
    END IF;

    v_now := clock_timestamp();
    UPDATE iu_outbound_worker AS w
       SET last_run_at = v_now,
           last_delivered = v_delivered
     WHERE w.name = v_name;

    v_answer := jsonb_build_object('ok', true, 'worker', v_name, 'sink', v_worker.sink,
                                   'delivered', v_delivered, 'last_run_at', v_now);
    IF v_worker.sink = 'log' THEN
        v_answer := v_answer || jsonb_build_object('events', v_events);
    END IF;
    RETURN v_answer;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_iu_outbound_tick(text, integer) FROM PUBLIC;
-- A tick, like the reaper and prune: the orchestrator's (conveyor_admin), not a worker's (the
-- log sink returns every event's payload).
GRANT EXECUTE ON FUNCTION conveyor.fn_iu_outbound_tick(text, integer) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_iu_outbound_tick(text, integer) IS
    'One round of an outbound worker: deliver up to batch (default 500) events past its cursor to its sink (table: iu_outbound_delivery; log: returned as "events"), advance, stamp last_run_at = clock_timestamp() even when idle. Answer {ok, worker, sink, delivered, last_run_at[, events]}; disabled worker: refusal outbound_worker_disabled. Example: SELECT conveyor.fn_iu_outbound_tick()';
