-- fn_heartbeat_register: start an incarnation of a named component. Every call draws a new epoch
-- (a restart under the same name is a new incarnation) and clears deregistered_at and
-- last_beat_at: the new incarnation has not beaten yet (v_queue_health says 'never' until it
-- does). An open silence episode stays open until the stale check sees the component alive again
-- and emits system/queue_worker_recovered. A per-component stale_threshold_seconds set by an
-- operator is kept. Gated by queue.heartbeat.enabled.
-- Answer: {"ok": true, "component", "epoch", "registered_at"} | refusal heartbeat_disabled.
CREATE OR REPLACE FUNCTION conveyor.fn_heartbeat_register(
    component       text,
    component_kind  text,
    cadence_seconds integer,
    metadata        jsonb DEFAULT '{}'
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_metadata jsonb;
    v_epoch    uuid := gen_random_uuid();
    v_now      timestamptz := clock_timestamp();
BEGIN
    IF NOT fn_config_enabled('queue.heartbeat.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'heartbeat_disabled',
                                  'flag', 'queue.heartbeat.enabled');
    END IF;
    PERFORM fn_heartbeat__component('fn_heartbeat_register', fn_heartbeat_register.component);
    IF fn_heartbeat_register.component_kind IS NULL
       OR fn_heartbeat_register.component_kind NOT IN ('worker', 'orchestrator', 'outbound', 'listener', 'other') THEN
        RAISE EXCEPTION 'fn_heartbeat_register: component_kind % is not one of worker, orchestrator, outbound, listener, other',
                        quote_nullable(left(fn_heartbeat_register.component_kind, 64))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Workers register as worker; use other for anything else that beats.';
    END IF;
    IF fn_heartbeat_register.cadence_seconds IS NULL
       OR fn_heartbeat_register.cadence_seconds NOT BETWEEN 1 AND 86400 THEN
        RAISE EXCEPTION 'fn_heartbeat_register: cadence_seconds is %; it must be from 1 to 86400',
                        coalesce(fn_heartbeat_register.cadence_seconds::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass how often the component beats, in seconds.';
    END IF;
    v_metadata := fn_heartbeat__metadata('fn_heartbeat_register', fn_heartbeat_register.metadata);

    INSERT INTO queue_heartbeat AS hb
           (component, component_kind, cadence_seconds, epoch, registered_at, metadata)
    VALUES (fn_heartbeat_register.component, fn_heartbeat_register.component_kind,
            fn_heartbeat_register.cadence_seconds, v_epoch, v_now, v_metadata)
    ON CONFLICT ON CONSTRAINT queue_heartbeat_pkey DO UPDATE
       SET component_kind = excluded.component_kind,
           cadence_seconds = excluded.cadence_seconds,
           epoch = excluded.epoch,
           registered_at = excluded.registered_at,
           last_beat_at = NULL,
           deregistered_at = NULL,
           metadata = excluded.metadata;

    RETURN jsonb_build_object('ok', true, 'component', fn_heartbeat_register.component,
                              'epoch', v_epoch, 'registered_at', v_now);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_heartbeat_register(text, text, integer, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_heartbeat_register(text, text, integer, jsonb)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_heartbeat_register(text, text, integer, jsonb) IS
    'Register (or re-register) a component and start a new incarnation: new epoch, deregistered_at and last_beat_at cleared. component 1..255 bytes; component_kind worker|orchestrator|outbound|listener|other; cadence_seconds 1..86400; metadata a JSON object ≤ 8 KB without credential-like keys. Answer {ok, component, epoch, registered_at}; refusal heartbeat_disabled. Bad input: SQLSTATE 22023. Example: SELECT conveyor.fn_heartbeat_register(''host1:4242'', ''worker'', 5, ''{"queues": ["default"]}'')';
