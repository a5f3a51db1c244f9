-- Phase 0 verification gate: one (item, passed, detail) row per check. Everything happens in
-- one transaction that is rolled back, so running it leaves no trace.
--
-- Outbox checks and committed data: events emitted here belong to this (uncommitted)
-- transaction, which fn_outbox_read must never return; the gate checks exactly that. To check
-- reading, ordering and advancing, it then stands in for "committed earlier" by giving its
-- events txid 1 or 2: no real transaction has an id below 3, so those events sort before every
-- real event and lie below the read horizon, just like events of long-finished transactions.
-- The gate's consumers, its outbound workers and its use of the legacy cursor are thrown away
-- with the rollback.
BEGIN;

\ir ../../gate_probes.sql

-- Every object phase 0 creates exists.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'objects: schemas, tables and views exist',
       count(*) FILTER (WHERE to_regclass(o.name) IS NULL) = 0
           AND to_regnamespace('conveyor') IS NOT NULL AND to_regnamespace('iu_core') IS NOT NULL,
       COALESCE('missing: ' || string_agg(o.name, ', ') FILTER (WHERE to_regclass(o.name) IS NULL),
                count(*) || ' relations present')
  FROM unnest(ARRAY[
           'conveyor.dot_config', 'conveyor.event_type_registry', 'conveyor.event_outbox',
           'conveyor.event_outbox_cursor', 'conveyor.iu_sql_event_route',
           'iu_core.iu_staging_record', 'conveyor.iu_template_instance',
           'conveyor.iu_outbound_worker', 'conveyor.iu_outbound_delivery',
           'conveyor.event_outbox_txid_id_idx', 'conveyor.event_outbox_event_type_id_idx',
           'iu_core.iu_staging_record_collection_status_idx', 'conveyor.v_iu_staging_record',
           'conveyor.v_event_outbox_cursor_lag', 'conveyor.v_iu_outbound_worker']) AS o(name);

CREATE TEMP TABLE gate_function (signature text NOT NULL, public_api boolean NOT NULL)
    ON COMMIT DROP;
INSERT INTO pg_temp.gate_function (signature, public_api) VALUES
    ('conveyor.fn_config_get(text)', true),
    ('conveyor.fn_config_enabled(text)', true),
    ('conveyor.fn_config_set(text, jsonb, text, text)', true),
    ('conveyor.fn_event_type_register(text, text)', true),
    ('conveyor.fn_outbox_emit(text, jsonb, text)', true),
    ('conveyor.fn_outbox_horizon()', true),
    ('conveyor.fn_outbox_read(text, integer)', true),
    ('conveyor.fn_outbox_advance(text, xid8, bigint)', true),
    ('iu_core.fn_iu_op_emit(text, bigint, text, text, text)', false),
    ('iu_core.fn_iu_op_transition(bigint, text, text, text)', false),
    ('iu_core.fn_iu_op_mark(text, text, text, text)', true),
    ('iu_core.fn_iu_op_approve(bigint, text)', true),
    ('iu_core.fn_iu_op_cut(bigint, text, text)', true),
    ('iu_core.fn_iu_op_verify_cut(bigint, text)', true),
    ('iu_core.fn_iu_op_cleanup(bigint, text)', true),
    ('conveyor.fn_iu_auto_instantiate_from_event(bigint)', true),
    ('conveyor.fn_iu_auto_instantiate_run(integer)', true),
    ('conveyor.fn_iu_outbound_tick(text, integer)', true);

INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'objects: functions exist',
       count(*) FILTER (WHERE to_regprocedure(f.signature) IS NULL) = 0,
       COALESCE('missing: ' || string_agg(f.signature, ', ')
                                   FILTER (WHERE to_regprocedure(f.signature) IS NULL),
                count(*) || ' functions present')
  FROM pg_temp.gate_function AS f;

INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'objects: roles conveyor_admin, conveyor_worker, conveyor_reader exist',
       count(*) = 3, count(*) || ' of 3 roles'
  FROM pg_catalog.pg_roles AS r
 WHERE r.rolname IN ('conveyor_admin', 'conveyor_worker', 'conveyor_reader');

-- Privileges: PUBLIC executes nothing, definers pin search_path, runtime roles get no tables.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'privileges: PUBLIC cannot execute any phase 0 function',
       count(*) = 0, COALESCE('PUBLIC may execute: ' || string_agg(f.signature, ', '), 'none')
  FROM pg_temp.gate_function AS f
  JOIN pg_catalog.pg_proc AS p ON p.oid = to_regprocedure(f.signature)
 WHERE EXISTS (SELECT 1
                 FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) AS a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');

INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'privileges: every SECURITY DEFINER function pins search_path',
       count(*) = 0, COALESCE('unpinned: ' || string_agg(f.signature, ', '), 'all pinned')
  FROM pg_temp.gate_function AS f
  JOIN pg_catalog.pg_proc AS p ON p.oid = to_regprocedure(f.signature)
 WHERE p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c(setting)
                    WHERE c.setting LIKE 'search_path=%');

INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'privileges: worker and reader read no table; reader reads the views; only admin sets config',
       NOT has_table_privilege('conveyor_worker', 'conveyor.dot_config', 'SELECT')
       AND NOT has_table_privilege('conveyor_worker', 'conveyor.event_outbox', 'SELECT')
       AND NOT has_table_privilege('conveyor_reader', 'conveyor.event_outbox', 'SELECT')
       AND NOT has_table_privilege('conveyor_reader', 'iu_core.iu_staging_record', 'SELECT')
       AND has_table_privilege('conveyor_reader', 'conveyor.v_iu_staging_record', 'SELECT')
       AND has_table_privilege('conveyor_reader', 'conveyor.v_event_outbox_cursor_lag', 'SELECT')
       AND has_function_privilege('conveyor_worker', 'conveyor.fn_config_enabled(text)', 'EXECUTE')
       AND has_function_privilege('conveyor_reader', 'conveyor.fn_config_get(text)', 'EXECUTE')
       AND has_function_privilege('conveyor_worker', 'iu_core.fn_iu_op_mark(text, text, text, text)', 'EXECUTE')
       AND NOT has_function_privilege('conveyor_worker', 'conveyor.fn_config_set(text, jsonb, text, text)', 'EXECUTE')
       AND NOT has_function_privilege('conveyor_reader', 'conveyor.fn_config_set(text, jsonb, text, text)', 'EXECUTE')
       AND has_function_privilege('conveyor_admin', 'conveyor.fn_config_set(text, jsonb, text, text)', 'EXECUTE'),
       'has_table_privilege / has_function_privilege';

-- Seed data from data.up.sql.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'data: event types, routes, flag and outbound worker seeded',
       (SELECT count(*) FROM conveyor.event_type_registry AS r
         WHERE r.event_type IN ('staging.record_marked', 'staging.record_approved',
                                'staging.record_consumed', 'staging.record_verified',
                                'staging.record_cleaned', 'iu.template.instance_auto_composed')) = 6
       AND (SELECT count(*) FROM conveyor.iu_sql_event_route AS r
             WHERE r.route LIKE 'iu\_staging\_record.%') = 5
       AND conveyor.fn_config_get('iu.auto_instantiate.legacy_enabled') IS NOT NULL
       AND EXISTS (SELECT 1 FROM conveyor.iu_outbound_worker AS w
                    WHERE w.name = 'iu_outbound_default'),
       'legacy_enabled = ' || COALESCE(conveyor.fn_config_get('iu.auto_instantiate.legacy_enabled')::text, 'missing');

-- dot_config round trip. (fn_config_get/enabled are STABLE: each check reads in its own
-- statement, after the write it checks.)
DO $$
DECLARE
    v_item   CONSTANT text := 'config: fn_config_set → fn_config_get / fn_config_enabled round trip';
    v_set    jsonb;
    v_get    jsonb;
    v_on     boolean;
    v_reset  jsonb;
    v_off    boolean;
    v_absent boolean;
    v_badkey text := 'accepted';
BEGIN
    v_set := conveyor.fn_config_set('gate.phase0.flag', 'true', updated_by => 'gate');
    v_get := conveyor.fn_config_get('gate.phase0.flag');
    v_on := conveyor.fn_config_enabled('gate.phase0.flag');
    v_reset := conveyor.fn_config_set('gate.phase0.flag', 'false');
    v_off := NOT conveyor.fn_config_enabled('gate.phase0.flag');
    v_absent := conveyor.fn_config_get('gate.phase0.missing') IS NULL
                AND NOT conveyor.fn_config_enabled('gate.phase0.missing');
    BEGIN
        PERFORM conveyor.fn_config_set('Not A Key', 'true');
    EXCEPTION WHEN invalid_parameter_value THEN
        v_badkey := 'rejected';
    END;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_set @> '{"ok": true, "key": "gate.phase0.flag", "previous": null, "value": true}'
            AND v_get = 'true'::jsonb AND v_on
            AND v_reset @> '{"ok": true, "previous": true, "value": false}' AND v_off
            AND v_absent AND v_badkey = 'rejected',
            format('set %s; get %s; set again %s; bad key %s', v_set, v_get, v_reset, v_badkey));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('config: fn_config_set → fn_config_get / fn_config_enabled round trip', false, SQLERRM);
END;
$$;

-- The outbox never returns an event of a transaction that is still running (here: our own).
DO $$
DECLARE
    v_item  CONSTANT text := 'outbox: an event of a still-running transaction is not readable';
    v_id    bigint;
    v_txid  xid8;
    v_found integer;
BEGIN
    v_id := conveyor.fn_outbox_emit('staging.record_marked', '{"gate": "own"}', 'gate');
    SELECT eo.txid INTO v_txid FROM conveyor.event_outbox AS eo WHERE eo.id = v_id;
    -- A consumer positioned right below the horizon would see the event next if it counted.
    INSERT INTO conveyor.event_outbox_cursor (consumer, last_txid, last_id)
    VALUES ('gate.phase0.own',
            ((conveyor.fn_outbox_horizon()::text::numeric - 1)::text)::xid8,
            9223372036854775807);
    SELECT count(*) INTO v_found FROM conveyor.fn_outbox_read('gate.phase0.own', 10000) AS r;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_txid = pg_current_xact_id()
            AND v_txid >= conveyor.fn_outbox_horizon()
            AND v_found = 0,
            format('event %s (txid %s) invisible; reads returned %s', v_id, v_txid, v_found));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('outbox: an event of a still-running transaction is not readable', false, SQLERRM);
END;
$$;

-- Committed events come in (txid, id) order; advancing moves one consumer only.
-- The events stay for the checks below (legacy, outbound).
DO $$
DECLARE
    v_item    CONSTANT text := 'outbox: emit → read in (txid, id) order → advance; a second consumer still sees the events';
    v_first   bigint;
    v_second  bigint;
    v_read_a  bigint[];
    v_again_a bigint[];
    v_read_b  bigint[];
    v_advance jsonb;
    v_stale   jsonb;
    v_lag     bigint;
BEGIN
    v_first := conveyor.fn_outbox_emit('staging.record_marked', '{"gate": "first"}', 'gate');
    v_second := conveyor.fn_outbox_emit('staging.record_marked', '{"gate": "second"}', 'gate');
    -- The later id belongs to the earlier transaction: it must come first.
    UPDATE conveyor.event_outbox AS eo SET txid = '2' WHERE eo.id = v_first;
    UPDATE conveyor.event_outbox AS eo SET txid = '1' WHERE eo.id = v_second;

    SELECT array_agg(r.id ORDER BY r.txid, r.id) INTO v_read_a
      FROM conveyor.fn_outbox_read('gate.phase0.a', 2) AS r;
    v_advance := conveyor.fn_outbox_advance('gate.phase0.a', '2', v_first);
    SELECT array_agg(r.id) INTO v_again_a
      FROM conveyor.fn_outbox_read('gate.phase0.a', 2) AS r
     WHERE r.id IN (v_first, v_second);
    SELECT array_agg(r.id ORDER BY r.txid, r.id) INTO v_read_b
      FROM conveyor.fn_outbox_read('gate.phase0.b', 2) AS r;
    v_stale := conveyor.fn_outbox_advance('gate.phase0.a', '1', v_second);
    SELECT l.lag_events INTO v_lag
      FROM conveyor.v_event_outbox_cursor_lag AS l WHERE l.consumer = 'gate.phase0.b';

    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_read_a = ARRAY[v_second, v_first]
            AND v_advance @> '{"ok": true, "moved": true, "events": 2}'
            AND v_again_a IS NULL
            AND v_read_b = ARRAY[v_second, v_first]
            AND v_stale @> '{"ok": true, "moved": false, "events": 0}'
            AND (v_stale ->> 'last_id')::bigint = v_first
            AND v_lag >= 2,
            format('read %s, then %s; advance %s; other consumer read %s; stale advance %s',
                   v_read_a, COALESCE(v_again_a::text, '{}'), v_advance, v_read_b, v_stale));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('outbox: emit → read in (txid, id) order → advance; a second consumer still sees the events', false, SQLERRM);
END;
$$;

DO $$
DECLARE
    v_payload_refused boolean := false;
    v_type_refused    boolean := false;
    v_hint            text;
BEGIN
    BEGIN
        PERFORM conveyor.fn_outbox_emit('gate.unregistered_type', '{}');
    EXCEPTION WHEN invalid_parameter_value THEN
        GET STACKED DIAGNOSTICS v_hint = PG_EXCEPTION_HINT;
        v_type_refused := v_hint LIKE '%fn_event_type_register%';
    END;
    BEGIN
        PERFORM conveyor.fn_outbox_emit('staging.record_marked', '[1, 2]');
    EXCEPTION WHEN invalid_parameter_value THEN
        v_payload_refused := true;
    END;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('outbox: unregistered type and non-object payload are rejected',
            v_type_refused AND v_payload_refused,
            format('unregistered type rejected with hint: %s; array payload rejected: %s',
                   v_type_refused, v_payload_refused));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('outbox: unregistered type and non-object payload are rejected', false, SQLERRM);
END;
$$;

-- Staging operations: MARK → APPROVE → CUT → VERIFY_CUT → CLEANUP emits five events.
DO $$
DECLARE
    v_item     CONSTANT text := 'staging: MARK → APPROVE → CUT → VERIFY_CUT → CLEANUP emits the five staging events';
    v_mark     jsonb;
    v_id       bigint;
    v_early    jsonb;
    v_repeat   jsonb;
    v_types    text[];
    v_status   text;
BEGIN
    v_mark := iu_core.fn_iu_op_mark('gate.phase0', 'record-' || pg_current_xact_id()::text,
                                    'gate', 'ref://gate');
    v_id := (v_mark ->> 'record_id')::bigint;
    v_early := iu_core.fn_iu_op_cut(v_id, 'gate');
    PERFORM iu_core.fn_iu_op_approve(v_id, 'gate');
    PERFORM iu_core.fn_iu_op_cut(v_id, 'gate', 'target://gate');
    PERFORM iu_core.fn_iu_op_verify_cut(v_id, 'gate');
    PERFORM iu_core.fn_iu_op_cleanup(v_id, 'gate');
    v_repeat := iu_core.fn_iu_op_approve(v_id, 'gate');

    SELECT array_agg(eo.event_type ORDER BY eo.id) INTO v_types
      FROM conveyor.event_outbox AS eo
     WHERE eo.txid = pg_current_xact_id()
       AND eo.payload @> jsonb_build_object('record_id', v_id, 'collection', 'gate.phase0',
                                            'actor', 'gate');
    SELECT r.status INTO v_status FROM conveyor.v_iu_staging_record AS r WHERE r.id = v_id;

    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_mark @> '{"ok": true, "status": "marked"}'
            AND v_early @> '{"refused": true, "reason": "invalid_transition", "status": "marked"}'
            AND v_repeat @> '{"ok": true, "already": true, "status": "cleaned"}'
            AND v_status = 'cleaned'
            AND v_types = ARRAY['staging.record_marked', 'staging.record_approved',
                                'staging.record_consumed', 'staging.record_verified',
                                'staging.record_cleaned'],
            format('events %s; cut before approve %s', v_types, v_early ->> 'reason'));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('staging: MARK → APPROVE → CUT → VERIFY_CUT → CLEANUP emits the five staging events', false, SQLERRM);
END;
$$;

-- Legacy auto-instantiate: one instance per event, however often the path runs.
DO $$
DECLARE
    v_item     CONSTANT text := 'legacy: auto-instantiate creates exactly one instance for an event, run twice';
    v_event    bigint;
    v_aged     integer;
    v_first    jsonb;
    v_second   jsonb;
    v_direct   jsonb;
    v_count    integer;
    v_disabled jsonb;
BEGIN
    v_event := conveyor.fn_outbox_emit('iu.template.instance_auto_composed',
                   jsonb_build_object('template', 'gate.phase0.template',
                                      'instance_key', 'gate-' || pg_current_xact_id()::text,
                                      'params', '{"n": 1}'::jsonb),
                   'gate');
    UPDATE conveyor.event_outbox AS eo SET txid = '1' WHERE eo.id = v_event;
    SELECT count(*) INTO v_aged FROM conveyor.event_outbox AS eo WHERE eo.txid < '3';
    -- The mechanism is checked whatever the flag says (phase 4 hands this path to dispatch and
    -- turns it off); the rollback restores the flag.
    UPDATE conveyor.dot_config AS dc SET value = 'true'
     WHERE dc.key = 'iu.auto_instantiate.legacy_enabled';

    -- Run the legacy path over the gate's events (they sort first), twice from the start.
    UPDATE conveyor.event_outbox_cursor AS c SET last_txid = '0', last_id = 0
     WHERE c.consumer = 'legacy.auto_instantiate';
    v_first := conveyor.fn_iu_auto_instantiate_run(batch => v_aged);
    UPDATE conveyor.event_outbox_cursor AS c SET last_txid = '0', last_id = 0
     WHERE c.consumer = 'legacy.auto_instantiate';
    v_second := conveyor.fn_iu_auto_instantiate_run(batch => v_aged);
    v_direct := conveyor.fn_iu_auto_instantiate_from_event(v_event);
    SELECT count(*) INTO v_count
      FROM conveyor.iu_template_instance AS ti WHERE ti.source_event_id = v_event;

    PERFORM conveyor.fn_config_set('iu.auto_instantiate.legacy_enabled', 'false');
    v_disabled := conveyor.fn_iu_auto_instantiate_run();

    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_count = 1
            AND v_first @> '{"ok": true, "created": 1}'
            AND v_second @> '{"ok": true, "created": 0, "already": 1}'
            AND v_direct @> '{"ok": true, "already": true}'
            AND v_disabled = '{"refused": true, "reason": "auto_instantiate_legacy_disabled",
                             "flag": "iu.auto_instantiate.legacy_enabled"}',
            format('instances %s; first run %s; second run %s; flag off %s',
                   v_count, v_first, v_second, v_disabled));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('legacy: auto-instantiate creates exactly one instance for an event, run twice', false, SQLERRM);
END;
$$;

-- Outbound tick: delivers to the table sink, returns events for the log sink, stamps
-- last_run_at even when idle, refuses when disabled.
DO $$
DECLARE
    v_item     CONSTANT text := 'outbound: tick delivers (table and log sinks) and stamps last_run_at';
    v_aged     integer;
    v_first    jsonb;
    v_second   jsonb;
    v_log      jsonb;
    v_rows     integer;
    v_stamp1   timestamptz;
    v_stamp2   timestamptz;
    v_disabled jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM conveyor.event_outbox AS eo WHERE eo.txid < '3') THEN
        PERFORM conveyor.fn_outbox_emit('staging.record_marked', '{"gate": "outbound"}', 'gate');
        UPDATE conveyor.event_outbox AS eo SET txid = '1' WHERE eo.txid = pg_current_xact_id();
    END IF;
    SELECT count(*) INTO v_aged FROM conveyor.event_outbox AS eo WHERE eo.txid < '3';

    INSERT INTO conveyor.iu_outbound_worker (name, consumer, sink) VALUES
        ('gate_phase0_table', 'gate.phase0.outbound_table', 'table'),
        ('gate_phase0_log', 'gate.phase0.outbound_log', 'log'),
        ('gate_phase0_off', 'gate.phase0.outbound_off', 'table');
    UPDATE conveyor.iu_outbound_worker AS w SET enabled = false WHERE w.name = 'gate_phase0_off';

    v_first := conveyor.fn_iu_outbound_tick('gate_phase0_table', v_aged);
    SELECT w.last_run_at INTO v_stamp1 FROM conveyor.iu_outbound_worker AS w
     WHERE w.name = 'gate_phase0_table';
    v_second := conveyor.fn_iu_outbound_tick('gate_phase0_table', v_aged);
    SELECT w.last_run_at INTO v_stamp2 FROM conveyor.iu_outbound_worker AS w
     WHERE w.name = 'gate_phase0_table';
    -- Every gate event delivered exactly once (the second tick goes on past them).
    SELECT count(*) INTO v_rows
      FROM conveyor.iu_outbound_delivery AS d
      JOIN conveyor.event_outbox AS eo ON eo.id = d.event_id
     WHERE d.worker = 'gate_phase0_table' AND eo.txid < '3';
    v_log := conveyor.fn_iu_outbound_tick('gate_phase0_log', v_aged);
    v_disabled := conveyor.fn_iu_outbound_tick('gate_phase0_off');

    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            (v_first ->> 'delivered')::integer = v_aged
            AND v_rows = v_aged
            AND v_second @> '{"ok": true}'
            AND v_stamp1 IS NOT NULL AND v_stamp2 > v_stamp1
            AND jsonb_array_length(v_log -> 'events') = v_aged
            AND (v_log ->> 'delivered')::integer = v_aged
            AND v_disabled @> '{"refused": true, "reason": "outbound_worker_disabled"}'
            AND EXISTS (SELECT 1 FROM conveyor.iu_outbound_worker AS w
                         WHERE w.name = 'iu_outbound_default' AND w.sink = 'table'),
            format('table sink delivered %s, then %s more (gate events delivered: %s); log sink returned %s events; disabled: %s',
                   v_first ->> 'delivered', v_second ->> 'delivered', v_rows,
                   jsonb_array_length(v_log -> 'events'), v_disabled ->> 'reason'));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('outbound: tick delivers (table and log sinks) and stamps last_run_at', false, SQLERRM);
END;
$$;

-- The route domain CHECK admits phase 0's domains and rejects one that no phase admits (phase 4
-- widens the same constraint by name: customer and others become valid, so the probe is not one).
DO $$
DECLARE
    v_constraint text := '(none)';
BEGIN
    PERFORM conveyor.fn_event_type_register('system/gate_phase0_probe');
    PERFORM conveyor.fn_event_type_register('nowhere.gate_phase0_probe');
    INSERT INTO conveyor.iu_sql_event_route
           (route, source_table, operation, target_event_type, target_event_domain)
    VALUES ('gate.phase0.system', 'conveyor.event_outbox', 'INSERT',
            'system/gate_phase0_probe', 'system');
    BEGIN
        INSERT INTO conveyor.iu_sql_event_route
               (route, source_table, operation, target_event_type, target_event_domain)
        VALUES ('gate.phase0.nowhere', 'conveyor.event_outbox', 'INSERT',
                'nowhere.gate_phase0_probe', 'nowhere');
    EXCEPTION WHEN check_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
    END;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('routes: target_event_domain CHECK admits system and rejects an unknown domain',
            v_constraint = 'iu_sql_event_route_target_event_domain_check',
            'system accepted; nowhere rejected by ' || v_constraint);
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('routes: target_event_domain CHECK admits system and rejects an unknown domain', false,
            SQLERRM);
END;
$$;

SELECT g.item, g.passed, g.detail FROM pg_temp.gate_result AS g ORDER BY g.seq;

ROLLBACK;
