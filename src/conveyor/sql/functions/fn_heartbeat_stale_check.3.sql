-- fn_heartbeat_stale_check: open and close silence episodes, one event each (RELIABILITY #41).
--   * A live component (not deregistered) whose last sign of life (last_beat_at, else
--     registered_at) is older than its threshold and that has no open episode gets one:
--     silent_since is set and ONE system/queue_worker_silent event is emitted. Later checks in
--     the same episode emit nothing.
--   * A component with an open episode that is alive again (its last sign of life is within
--     the threshold: it beat, or re-registered) or that was deregistered meanwhile gets its
--     episode closed and ONE system/queue_worker_recovered event.
-- The threshold is the row's stale_threshold_seconds, else the larger of
-- queue.heartbeat.stale_threshold_seconds (default 300) and 2 × cadence_seconds, so a component
-- that beats slower than the global threshold is not reported between two healthy beats.
-- Every decision is taken on rows locked FOR UPDATE (in component order) and re-checked after
-- any wait, so two checks at once emit one event per episode, and a beat that lands while the
-- check waits on its row is seen. Events carry names, kinds and times only (no metadata).
-- Gated by queue.heartbeat.enabled.
-- Answer: {"ok": true, "silent": [components], "recovered": [components]} | refusal
-- heartbeat_disabled.
CREATE OR REPLACE FUNCTION conveyor.fn_heartbeat_stale_check()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_now       timestamptz := clock_timestamp();
    v_default   numeric;
    v_row       record;
    v_silent    text[] := '{}';
    v_recovered text[] := '{}';
BEGIN
    IF NOT fn_config_enabled('queue.heartbeat.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'heartbeat_disabled',
                                  'flag', 'queue.heartbeat.enabled');
    END IF;
    v_default := greatest(fn_job__config_number('queue.heartbeat.stale_threshold_seconds', 300), 1);

    -- Open episodes.
    FOR v_row IN
        SELECT hb.component, hb.component_kind, hb.epoch, hb.cadence_seconds, hb.last_beat_at,
               hb.registered_at,
               coalesce(hb.stale_threshold_seconds, greatest(v_default, 2 * hb.cadence_seconds))
                   AS threshold_seconds
          FROM queue_heartbeat AS hb
         WHERE hb.deregistered_at IS NULL
           AND hb.silent_since IS NULL
           AND coalesce(hb.last_beat_at, hb.registered_at)
               < v_now - make_interval(secs => coalesce(hb.stale_threshold_seconds,
                                                        greatest(v_default, 2 * hb.cadence_seconds)))
         ORDER BY hb.component
           FOR UPDATE OF hb
    LOOP
        UPDATE queue_heartbeat AS hb SET silent_since = v_now WHERE hb.component = v_row.component;
        PERFORM fn_outbox_emit(
            'system/queue_worker_silent',
            jsonb_build_object('component', v_row.component,
                               'kind', v_row.component_kind,
                               'epoch', v_row.epoch,
                               'last_beat_at', v_row.last_beat_at,
                               'registered_at', v_row.registered_at,
                               'cadence_seconds', v_row.cadence_seconds,
                               'threshold_seconds', v_row.threshold_seconds,
                               'silent_since', v_now),
            'fn_heartbeat_stale_check');
        v_silent := v_silent || v_row.component;
    END LOOP;

    -- Close episodes: alive again, or left gracefully.
    FOR v_row IN
        SELECT hb.component, hb.component_kind, hb.epoch, hb.last_beat_at, hb.silent_since,
               hb.deregistered_at
          FROM queue_heartbeat AS hb
         WHERE hb.silent_since IS NOT NULL
           AND (hb.deregistered_at IS NOT NULL
                OR coalesce(hb.last_beat_at, hb.registered_at)
                   >= v_now - make_interval(secs => coalesce(hb.stale_threshold_seconds,
                                                             greatest(v_default, 2 * hb.cadence_seconds))))
         ORDER BY hb.component
           FOR UPDATE OF hb
    LOOP
        UPDATE queue_heartbeat AS hb SET silent_since = NULL WHERE hb.component = v_row.component;
        PERFORM fn_outbox_emit(
            'system/queue_worker_recovered',
            jsonb_build_object('component', v_row.component,
                               'kind', v_row.component_kind,
                               'epoch', v_row.epoch,
                               'last_beat_at', v_row.last_beat_at,
                               'silent_since', v_row.silent_since,
                               'recovered_at', v_now,
                               'silent_seconds', round(extract(epoch FROM v_now - v_row.silent_since), 3),
                               'deregistered', v_row.deregistered_at IS NOT NULL),
            'fn_heartbeat_stale_check');
        v_recovered := v_recovered || v_row.component;
    END LOOP;

    RETURN jsonb_build_object('ok', true, 'silent', to_jsonb(v_silent),
                              'recovered', to_jsonb(v_recovered));
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_heartbeat_stale_check() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_heartbeat_stale_check() TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_heartbeat_stale_check() IS
    'Open a silence episode (ONE system/queue_worker_silent event) for each live component whose last beat is older than its threshold (stale_threshold_seconds, else max(queue.heartbeat.stale_threshold_seconds, 2 × cadence)); close open episodes of components alive again or deregistered (ONE system/queue_worker_recovered). Safe to run concurrently. Answer {ok, silent: [component…], recovered: [component…]}; refusal heartbeat_disabled. Example: SELECT conveyor.fn_heartbeat_stale_check()';
