-- Phase 3 verification gate (ROADMAP §5.3), one (item, passed, detail) row per check:
--   1. the outbound worker ticks, so iu_outbound_default beats, and its v_queue_health row shows
--      status_hint = 'fresh';
--   2. a simulated 10 × cadence skip (its last_run_at moved back by 10 × cadence, which the
--      trigger carries into last_beat_at) makes fn_heartbeat_stale_check emit exactly one
--      system/queue_worker_silent for it;
--   3. the D31 watchdog and the D43 red zones receive that event;
--   4. a second stale check in the same silence episode emits nothing more;
--   5. privileges: PUBLIC executes nothing, definers pin search_path, runtime roles get only
--      their functions and views.
-- Time is simulated in the database and everything happens in one transaction that is rolled
-- back, so running this file leaves no trace. Heartbeats and the outbound worker are switched
-- on inside the transaction (the gate checks the mechanism, whatever an operator set).
--
-- Receivers and own events: fn_outbox_read never returns an event of a still-running
-- transaction, and the stale check's event belongs to this one. As in phase 0's gate, the event
-- is given txid 1 to stand in for "committed earlier" (no real transaction has an id below 3, so
-- it sorts before every real event and lies below the read horizon), and the two receivers'
-- cursors are put back to the beginning; with batch 1 each reads exactly that event.
BEGIN;

\ir ../../gate_probes.sql

UPDATE conveyor.dot_config AS dc SET value = 'true' WHERE dc.key = 'queue.heartbeat.enabled';
UPDATE conveyor.iu_outbound_worker AS w SET enabled = true WHERE w.name = 'iu_outbound_default';
INSERT INTO pg_temp.gate_state (key, value)
SELECT 'mark', coalesce(max(eo.id), 0) FROM conveyor.event_outbox AS eo;

-- 1. A tick beats iu_outbound_default: fresh.
DO $$
DECLARE
    v_item CONSTANT text := 'iu_outbound_default: an outbound tick beats it and v_queue_health shows status_hint = fresh';
    v_tick jsonb;
    v_run  timestamptz;
    v_row  record;
BEGIN
    v_tick := conveyor.fn_iu_outbound_tick(name => 'iu_outbound_default', batch => 1);
    SELECT w.last_run_at INTO v_run FROM conveyor.iu_outbound_worker AS w
     WHERE w.name = 'iu_outbound_default';
    SELECT h.status_hint, h.last_beat_at, h.heartbeat_age_seconds, h.component_kind
      INTO v_row
      FROM conveyor.v_queue_health AS h WHERE h.component = 'iu_outbound_default';
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_tick @> '{"ok": true}' AND v_row.status_hint = 'fresh'
            AND v_row.component_kind = 'outbound' AND v_row.last_beat_at = v_run,
            format('tick %s; v_queue_health: status_hint %s, kind %s, last_beat_at %s (last_run_at %s), age %s s',
                   v_tick, coalesce(v_row.status_hint, '(no row)'), v_row.component_kind,
                   v_row.last_beat_at, v_run, round(v_row.heartbeat_age_seconds::numeric, 3)));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('iu_outbound_default: an outbound tick beats it and v_queue_health shows status_hint = fresh',
            false, 'error: ' || SQLERRM);
END;
$$;

-- 2. A 10 × cadence skip → exactly one system/queue_worker_silent.
DO $$
DECLARE
    v_item    CONSTANT text := 'a simulated 10 × cadence skip makes fn_heartbeat_stale_check emit exactly one system/queue_worker_silent';
    v_mark    bigint := (SELECT gs.value FROM pg_temp.gate_state AS gs WHERE gs.key = 'mark');
    v_cadence integer;
    v_hint    text;
    v_check   jsonb;
    v_events  bigint[];
BEGIN
    -- Any silence episode it had before this gate's tick is closed first, so the skip below
    -- starts a new one.
    PERFORM conveyor.fn_heartbeat_stale_check();
    UPDATE conveyor.iu_outbound_worker AS w
       SET last_run_at = w.last_run_at - make_interval(secs => 10 * w.cadence_seconds)
     WHERE w.name = 'iu_outbound_default'
    RETURNING w.cadence_seconds INTO v_cadence;
    SELECT h.status_hint INTO v_hint FROM conveyor.v_queue_health AS h
     WHERE h.component = 'iu_outbound_default';
    v_check := conveyor.fn_heartbeat_stale_check();
    SELECT array_agg(eo.id ORDER BY eo.id) INTO v_events
      FROM conveyor.event_outbox AS eo
     WHERE eo.id > v_mark
       AND eo.event_type = 'system/queue_worker_silent'
       AND eo.payload ->> 'component' = 'iu_outbound_default';
    INSERT INTO pg_temp.gate_state (key, value) VALUES ('silent_event', v_events[1]);
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_hint = 'stale' AND v_check -> 'silent' ? 'iu_outbound_default'
            AND cardinality(v_events) = 1,
            format('cadence %s s, beat moved back %s s: status_hint %s; stale check %s; silent events %s',
                   v_cadence, 10 * v_cadence, v_hint, v_check, coalesce(v_events::text, '{}')));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('a simulated 10 × cadence skip makes fn_heartbeat_stale_check emit exactly one system/queue_worker_silent',
            false, 'error: ' || SQLERRM);
END;
$$;

-- 3. The watchdog and the red zones receive it.
DO $$
DECLARE
    v_item     CONSTANT text := 'D31 watchdog and D43 red zones receive the system/queue_worker_silent event';
    v_event    bigint := (SELECT gs.value FROM pg_temp.gate_state AS gs WHERE gs.key = 'silent_event');
    v_watchdog jsonb;
    v_zones    jsonb;
    v_alert    record;
    v_zone     record;
BEGIN
    IF v_event IS NULL THEN
        RAISE EXCEPTION 'no silent event from the check before';
    END IF;
    UPDATE conveyor.event_outbox AS eo SET txid = '1' WHERE eo.id = v_event;
    UPDATE conveyor.event_outbox_cursor AS c SET last_txid = '0', last_id = 0
     WHERE c.consumer IN ('watchdog', 'red_zones');
    v_watchdog := conveyor.fn_watchdog_receive(batch => 1);
    v_zones := conveyor.fn_red_zones_receive(batch => 1);
    SELECT a.component, a.alert, a.acknowledged_at INTO v_alert
      FROM conveyor.queue_watchdog_alert AS a WHERE a.event_id = v_event;
    SELECT rz.component, rz.event_id INTO v_zone
      FROM conveyor.v_red_zones AS rz WHERE rz.component = 'iu_outbound_default';
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_watchdog @> '{"ok": true, "received": 1}' AND v_zones @> '{"ok": true, "entered": 1}'
            AND v_alert.component = 'iu_outbound_default' AND v_alert.alert = 'silent'
            AND v_alert.acknowledged_at IS NULL
            AND v_zone.event_id = v_event,
            format('event %s; watchdog %s → alert %s for %s; red zones %s → v_red_zones lists %s',
                   v_event, v_watchdog, coalesce(v_alert.alert, '(none)'), v_alert.component,
                   v_zones, coalesce(v_zone.component, '(nothing)')));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('D31 watchdog and D43 red zones receive the system/queue_worker_silent event',
            false, 'error: ' || SQLERRM);
END;
$$;

-- 4. Still silent: a second check emits nothing more.
DO $$
DECLARE
    v_item   CONSTANT text := 'a second stale check in the same silence episode emits no second event';
    v_mark   bigint := (SELECT gs.value FROM pg_temp.gate_state AS gs WHERE gs.key = 'mark');
    v_check  jsonb;
    v_events bigint;
    v_since  timestamptz;
BEGIN
    v_check := conveyor.fn_heartbeat_stale_check();
    SELECT count(*) INTO v_events
      FROM conveyor.event_outbox AS eo
     WHERE eo.id > v_mark
       AND eo.event_type = 'system/queue_worker_silent'
       AND eo.payload ->> 'component' = 'iu_outbound_default';
    SELECT h.silent_since INTO v_since FROM conveyor.queue_heartbeat AS h
     WHERE h.component = 'iu_outbound_default';
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_check @> '{"ok": true}' AND NOT v_check -> 'silent' ? 'iu_outbound_default'
            AND v_events = 1 AND v_since IS NOT NULL,
            format('second check %s; silent events for iu_outbound_default: %s; episode open since %s',
                   v_check, v_events, v_since));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('a second stale check in the same silence episode emits no second event', false,
            'error: ' || SQLERRM);
END;
$$;

-- 5. Privileges.
CREATE TEMP TABLE gate_function (signature text NOT NULL, worker boolean NOT NULL) ON COMMIT DROP;
INSERT INTO pg_temp.gate_function (signature, worker) VALUES
    ('conveyor.fn_heartbeat_register(text, text, integer, jsonb)', true),
    ('conveyor.fn_heartbeat_beat(text, uuid, jsonb)', true),
    ('conveyor.fn_heartbeat_deregister(text, uuid)', true),
    ('conveyor.fn_orchestrator_acquire(text, integer)', true),
    ('conveyor.fn_orchestrator_check(text, bigint)', true),
    ('conveyor.fn_orchestrator_resign(text, bigint)', true),
    ('conveyor.fn_heartbeat_stale_check()', false),
    ('conveyor.fn_watchdog_receive(integer)', false),
    ('conveyor.fn_watchdog_acknowledge(bigint, text)', false),
    ('conveyor.fn_red_zones_receive(integer)', false),
    ('conveyor.fn_periodic_register(text, text, text, jsonb, text, integer)', false),
    ('conveyor.fn_periodic_unregister(text)', false),
    ('conveyor.fn_periodic_enqueue_due(integer)', false),
    ('conveyor.fn_cron_next(text, timestamptz)', false),
    ('conveyor.fn_queue_health__db_signals()', false),
    ('conveyor.fn_heartbeat__component(text, text)', false),
    ('conveyor.fn_heartbeat__metadata(text, jsonb)', false),
    ('conveyor.fn_iu_outbound__heartbeat()', false),
    ('conveyor.fn_job__notify_bridge()', false),
    ('conveyor.fn_cron__field(text, text, text, text, integer, integer, text[], integer)', false),
    ('conveyor.fn_cron__parse(text, text)', false),
    ('conveyor.fn_cron__walk(text, timestamptz, boolean, text)', false);

INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'privileges: PUBLIC executes no phase 3 function, definers pin search_path, workers get only theirs, readers only views',
       count(*) FILTER (WHERE p.oid IS NULL) = 0
       AND count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) = 0
       AND count(*) FILTER (WHERE p.prosecdef AND NOT EXISTS (
               SELECT 1 FROM unnest(p.proconfig) AS c(setting) WHERE c.setting LIKE 'search_path=%')) = 0
       AND count(*) FILTER (WHERE has_function_privilege('conveyor_worker', p.oid, 'EXECUTE') <> f.worker) = 0
       AND NOT has_table_privilege('conveyor_worker', 'conveyor.queue_heartbeat', 'SELECT')
       AND NOT has_table_privilege('conveyor_reader', 'conveyor.queue_heartbeat', 'SELECT')
       AND NOT has_table_privilege('conveyor_reader', 'conveyor.job_periodic', 'SELECT')
       AND has_table_privilege('conveyor_reader', 'conveyor.v_queue_health', 'SELECT')
       AND has_function_privilege('conveyor_reader', 'conveyor.fn_queue_health__db_signals()', 'EXECUTE')
       AND has_function_privilege('conveyor_reader', 'conveyor.fn_cron_next(text, timestamptz)', 'EXECUTE')
       AND has_table_privilege('conveyor_reader', 'conveyor.v_red_zones', 'SELECT'),
       format('%s functions; missing %s; PUBLIC-executable %s; unpinned definers %s; worker grants differing %s',
              count(*), count(*) FILTER (WHERE p.oid IS NULL),
              count(*) FILTER (WHERE EXISTS (
                  SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                   WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')),
              count(*) FILTER (WHERE p.prosecdef AND NOT EXISTS (
                  SELECT 1 FROM unnest(p.proconfig) AS c(setting) WHERE c.setting LIKE 'search_path=%')),
              coalesce(string_agg(f.signature, ', ')
                           FILTER (WHERE has_function_privilege('conveyor_worker', p.oid, 'EXECUTE') <> f.worker),
                       'none'))
  FROM pg_temp.gate_function AS f
  LEFT JOIN pg_catalog.pg_proc AS p ON p.oid = to_regprocedure(f.signature);

SELECT g.item, g.passed, g.detail FROM pg_temp.gate_result AS g ORDER BY g.seq;

ROLLBACK;
