-- fn_iu_outbound__heartbeat: trigger function (AFTER UPDATE OF last_run_at ON
-- iu_outbound_worker, per row). Carries an outbound worker's liveness stamp into its heartbeat
-- row, so fn_iu_outbound_tick (phase 0, unchanged) beats on every tick: last_run_at →
-- queue_heartbeat.last_beat_at, and its cadence along with it. Only a live heartbeat row of kind
-- 'outbound' named like the worker is touched (data.up registers iu_outbound_default; register
-- another outbound worker with fn_heartbeat_register(name, 'outbound', cadence)). While
-- queue.heartbeat.enabled is false nothing is carried, like every other beat.
-- Private: no EXECUTE grant (triggers need none).
CREATE OR REPLACE FUNCTION conveyor.fn_iu_outbound__heartbeat()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    IF NEW.last_run_at IS NOT NULL AND fn_config_enabled('queue.heartbeat.enabled') THEN
        UPDATE queue_heartbeat AS hb
           SET last_beat_at = NEW.last_run_at,
               cadence_seconds = NEW.cadence_seconds
         WHERE hb.component = NEW.name
           AND hb.component_kind = 'outbound'
           AND hb.deregistered_at IS NULL;
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_iu_outbound__heartbeat() FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_iu_outbound__heartbeat() IS
    'Trigger on iu_outbound_worker (AFTER UPDATE OF last_run_at): carries last_run_at into the live outbound heartbeat row of the same name (last_beat_at) while queue.heartbeat.enabled.';
