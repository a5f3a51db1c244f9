-- Phase 3 down: drop everything ddl.up.sql created, dependents first (views, triggers, then
-- functions, then tables). Without CASCADE on purpose: if a later phase still uses these objects,
-- this fails instead of taking them along (roll back phase 4 first). iu_outbound_worker and
-- job_queue lose only their phase-3 triggers; phase 0's fn_iu_outbound_tick was never changed.
-- Tables are dropped with their rows; the runner archives or refuses before it gets here.
-- Roles are cluster-wide and belong to phase 0; no down file ever drops them.

DROP VIEW conveyor.v_job_periodic;
DROP VIEW conveyor.v_orchestrator_leader;
DROP VIEW conveyor.v_queue_watchdog_alert_open;
DROP VIEW conveyor.v_red_zones;
DROP VIEW conveyor.v_queue_health;

DROP TRIGGER job_queue_notify_bridge_trg ON conveyor.job_queue;
DROP TRIGGER iu_outbound_worker_heartbeat_trg ON conveyor.iu_outbound_worker;

DROP FUNCTION conveyor.fn_periodic_enqueue_due(integer);
DROP FUNCTION conveyor.fn_periodic_unregister(text);
DROP FUNCTION conveyor.fn_periodic_register(text, text, text, jsonb, text, integer);
DROP FUNCTION conveyor.fn_cron_next(text, timestamptz);
DROP FUNCTION conveyor.fn_cron__walk(text, timestamptz, boolean, text);
DROP FUNCTION conveyor.fn_cron__parse(text, text);
DROP FUNCTION conveyor.fn_cron__field(text, text, text, text, integer, integer, text[], integer);
DROP FUNCTION conveyor.fn_orchestrator_resign(text, bigint);
DROP FUNCTION conveyor.fn_orchestrator_check(text, bigint);
DROP FUNCTION conveyor.fn_orchestrator_acquire(text, integer);
DROP FUNCTION conveyor.fn_job__notify_bridge();
DROP FUNCTION conveyor.fn_queue_health__db_signals();
DROP FUNCTION conveyor.fn_red_zones_receive(integer);
DROP FUNCTION conveyor.fn_watchdog_acknowledge(bigint, text);
DROP FUNCTION conveyor.fn_watchdog_receive(integer);
DROP FUNCTION conveyor.fn_iu_outbound__heartbeat();
DROP FUNCTION conveyor.fn_heartbeat_stale_check();
DROP FUNCTION conveyor.fn_heartbeat_deregister(text, uuid);
DROP FUNCTION conveyor.fn_heartbeat_beat(text, uuid, jsonb);
DROP FUNCTION conveyor.fn_heartbeat_register(text, text, integer, jsonb);
DROP FUNCTION conveyor.fn_heartbeat__metadata(text, jsonb);
DROP FUNCTION conveyor.fn_heartbeat__component(text, text);

-- Dropping a table drops its rows: refuse unless they are empty or were archived by the
-- runner (`conveyor phase rollback 3 --archive FILE`).
DO $$
BEGIN
    PERFORM conveyor_meta.fn_assert_empty_for_drop(ARRAY[
        'conveyor.job_periodic',
        'conveyor.orchestrator_leader',
        'conveyor.queue_red_zone',
        'conveyor.queue_watchdog_alert',
        'conveyor.queue_heartbeat'
    ]::regclass[]);
END
$$;

DROP TABLE conveyor.job_periodic;
DROP TABLE conveyor.orchestrator_leader;
DROP TABLE conveyor.queue_red_zone;
DROP TABLE conveyor.queue_watchdog_alert;
DROP TABLE conveyor.queue_heartbeat;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
