-- Phase 4 verification gate (ROADMAP §6.2), one (item, passed, detail) row per check:
--   1. the objects exist and the route domain CHECK admits the 9 domains (customer accepted, an
--      unknown domain still rejected by the same constraint);
--   2. the hand-over: legacy path off, legacy.auto_instantiate registered as a call_function
--      consumer, dispatch cursor present;
--   3. one iu.template.instance_auto_composed event consumed through the new dispatch path
--      produces the identical effect to the legacy path: two events of the same shape (different
--      instance keys), one run through fn_iu_auto_instantiate_run, one through
--      fn_consumer_dispatch; the two iu_template_instance rows are compared column by column
--      (all but id, instance_key and source_event_id);
--   4. the consumer dead letters remain empty;
--   5. privileges.
-- Everything happens in one transaction that is rolled back, so running it leaves no trace. The
-- flags are switched on inside the transaction (the gate checks the mechanism).
--
-- Own events: fn_outbox_read never returns an event of a still-running transaction, and the
-- gate's events belong to this one. As in the phase 0 and 3 gates they are given txid 1 (the
-- legacy one) and 2 (the dispatched one) to stand in for "committed earlier": no real
-- transaction has an id below 3, so they sort before every real event and lie below the read
-- horizon. The legacy cursor is put at the beginning and read with batch 1 (it gets the txid-1
-- event only); the dispatch cursor is put just past txid 1 and read with batch 1 (it gets the
-- txid-2 event only).
BEGIN;

\ir ../../gate_probes.sql

-- 1. Objects and the widened CHECK.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT * FROM pg_temp.fn_gate__objects(
    'objects: tables, views and functions of phase 4 exist',
    ARRAY['conveyor.executor_kind', 'conveyor.job_subscription',
          'conveyor.consumer_registry', 'conveyor.consumer_delivery',
          'conveyor.consumer_unmatched', 'conveyor.consumer_dead_letter',
          'conveyor.v_consumer_registry', 'conveyor.v_consumer_unmatched',
          'conveyor.v_consumer_dead_letter', 'conveyor.v_job_subscription',
          'conveyor.fn_consumer_dispatch(integer)',
          'conveyor.fn_consumer_register(text, text, text, text, text, text, integer, jsonb, regprocedure, text)',
          'conveyor.fn_consumer_disable(text, text)',
          'conveyor.fn_job_subscribe(text, text, text)',
          'conveyor.fn_job_unsubscribe(text, text)',
          'conveyor.fn_job_claim(text, text[], text[], integer, integer, text)']);

DO $$
DECLARE
    v_constraint text := '(none)';
BEGIN
    PERFORM conveyor.fn_event_type_register('customer.gate_phase4_probe');
    INSERT INTO conveyor.iu_sql_event_route
           (route, source_table, operation, target_event_type, target_event_domain)
    VALUES ('gate.phase4.customer', 'conveyor.event_outbox', 'INSERT',
            'customer.gate_phase4_probe', 'customer');
    BEGIN
        PERFORM conveyor.fn_event_type_register('nowhere.gate_phase4_probe');
        INSERT INTO conveyor.iu_sql_event_route
               (route, source_table, operation, target_event_type, target_event_domain)
        VALUES ('gate.phase4.nowhere', 'conveyor.event_outbox', 'INSERT',
                'nowhere.gate_phase4_probe', 'nowhere');
    EXCEPTION WHEN check_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
    END;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('routes: target_event_domain CHECK admits customer (9 domains) and still rejects others',
            v_constraint = 'iu_sql_event_route_target_event_domain_check',
            'customer accepted; nowhere rejected by ' || v_constraint);
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('routes: target_event_domain CHECK admits customer (9 domains) and still rejects others',
            false, 'error: ' || SQLERRM);
END;
$$;

-- 2. The hand-over.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'hand-over: legacy path off, legacy.auto_instantiate is a call_function consumer, dispatch cursor exists',
       NOT conveyor.fn_config_enabled('iu.auto_instantiate.legacy_enabled')
       AND conveyor.fn_config_get('queue.dispatch.enabled') IS NOT NULL
       AND EXISTS (SELECT 1 FROM conveyor.consumer_registry AS cr
                    WHERE cr.consumer = 'legacy.auto_instantiate'
                      AND cr.event_pattern = 'iu.template.instance_auto_composed'
                      AND cr.action = 'call_function' AND cr.enabled
                      AND cr.target = 'conveyor.fn_iu_auto_instantiate_from_event(bigint)'::regprocedure)
       AND EXISTS (SELECT 1 FROM conveyor.event_outbox_cursor AS c WHERE c.consumer = 'dispatch'),
       format('legacy_enabled %s; dispatch.enabled %s',
              conveyor.fn_config_get('iu.auto_instantiate.legacy_enabled'),
              conveyor.fn_config_get('queue.dispatch.enabled'));

-- 3 and 4. Legacy vs dispatch, compared column by column; no consumer dead letter.
DO $$
DECLARE
    v_item      CONSTANT text := 'an iu.template.instance_auto_composed event consumed via dispatch has the identical effect to the legacy path (iu_template_instance compared column by column)';
    v_tag       text := 'gate-' || pg_current_xact_id()::text;
    v_legacy_ev bigint;
    v_disp_ev   bigint;
    v_legacy    jsonb;
    v_dispatch  jsonb;
    v_refused   jsonb;
    v_row_l     jsonb;
    v_row_d     jsonb;
    v_diff      text;
    v_delivery  text;
BEGIN
    UPDATE conveyor.dot_config AS dc SET value = 'true'
     WHERE dc.key IN ('queue.dispatch.enabled', 'queue.job_substrate.enabled',
                      'iu.auto_instantiate.legacy_enabled');
    v_legacy_ev := conveyor.fn_outbox_emit('iu.template.instance_auto_composed',
                       jsonb_build_object('template', 'gate.phase4.template',
                                          'instance_key', v_tag || '-legacy',
                                          'params', '{"n": 1, "nested": {"a": [1, 2]}}'::jsonb),
                       'gate.phase4');
    v_disp_ev := conveyor.fn_outbox_emit('iu.template.instance_auto_composed',
                     jsonb_build_object('template', 'gate.phase4.template',
                                        'instance_key', v_tag || '-dispatch',
                                        'params', '{"n": 1, "nested": {"a": [1, 2]}}'::jsonb),
                     'gate.phase4');
    UPDATE conveyor.event_outbox AS eo SET txid = '1' WHERE eo.id = v_legacy_ev;
    UPDATE conveyor.event_outbox AS eo SET txid = '2' WHERE eo.id = v_disp_ev;

    -- The legacy path, over the txid-1 event only.
    UPDATE conveyor.event_outbox_cursor AS c SET last_txid = '0', last_id = 0
     WHERE c.consumer = 'legacy.auto_instantiate';
    v_legacy := conveyor.fn_iu_auto_instantiate_run(batch => 1);
    UPDATE conveyor.dot_config AS dc SET value = 'false'
     WHERE dc.key = 'iu.auto_instantiate.legacy_enabled';
    v_refused := conveyor.fn_iu_auto_instantiate_run(batch => 1);

    -- The new path, over the txid-2 event only.
    UPDATE conveyor.event_outbox_cursor AS c SET last_txid = '1', last_id = 9223372036854775807
     WHERE c.consumer = 'dispatch';
    v_dispatch := conveyor.fn_consumer_dispatch(batch => 1);

    SELECT to_jsonb(ti) - 'id' - 'instance_key' - 'source_event_id' INTO v_row_l
      FROM conveyor.iu_template_instance AS ti WHERE ti.source_event_id = v_legacy_ev;
    SELECT to_jsonb(ti) - 'id' - 'instance_key' - 'source_event_id' INTO v_row_d
      FROM conveyor.iu_template_instance AS ti WHERE ti.source_event_id = v_disp_ev;
    SELECT string_agg(format('%s: legacy %s, dispatch %s', k.key, v_row_l -> k.key, v_row_d -> k.key),
                      '; ' ORDER BY k.key)
      INTO v_diff
      FROM (SELECT jsonb_object_keys(coalesce(v_row_l, '{}') || coalesce(v_row_d, '{}')) AS key) AS k
     WHERE (v_row_l -> k.key) IS DISTINCT FROM (v_row_d -> k.key);
    SELECT string_agg(cd.consumer || ' ' || cd.outcome, ', ') INTO v_delivery
      FROM conveyor.consumer_delivery AS cd WHERE cd.event_id = v_disp_ev;

    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_legacy @> '{"ok": true, "read": 1, "created": 1}'
            AND v_refused = '{"refused": true, "reason": "auto_instantiate_legacy_disabled",
                             "flag": "iu.auto_instantiate.legacy_enabled"}'
            AND v_dispatch @> '{"ok": true, "read": 1, "matched": 1, "called": 1, "failed": 0}'
            AND v_row_l IS NOT NULL AND v_row_d IS NOT NULL AND v_diff IS NULL
            AND v_delivery = 'legacy.auto_instantiate called',
            format('legacy %s; dispatch %s; delivery %s; columns compared: %s; differences: %s',
                   v_legacy, v_dispatch, coalesce(v_delivery, '(none)'),
                   (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(v_row_l) AS k),
                   coalesce(v_diff, 'none')));

    INSERT INTO pg_temp.gate_result (item, passed, detail)
    SELECT 'the dispatch of the gate''s event wrote no consumer dead letter',
           count(*) = 0, count(*) || ' consumer dead letters for the gate''s event'
      FROM conveyor.consumer_dead_letter AS dl WHERE dl.event_id = v_disp_ev;
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

-- 5. Privileges.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT * FROM pg_temp.fn_gate__privileges(
    'privileges: PUBLIC executes no phase 4 function; definers pin search_path; admin dispatches, worker claims, reader reads the views only',
    ARRAY['fn\_consumer%', 'fn\_job\_subscribe', 'fn\_job\_unsubscribe', 'fn\_job\_claim'],
    COALESCE(has_function_privilege('conveyor_admin', to_regprocedure('conveyor.fn_consumer_dispatch(integer)'), 'EXECUTE'), false)
        AND NOT COALESCE(has_function_privilege('conveyor_worker', to_regprocedure('conveyor.fn_consumer_dispatch(integer)'), 'EXECUTE'), false)
        AND NOT COALESCE(has_function_privilege('conveyor_worker', to_regprocedure('conveyor.fn_job_subscribe(text, text, text)'), 'EXECUTE'), false)
        AND COALESCE(has_function_privilege('conveyor_worker', to_regprocedure('conveyor.fn_job_claim(text, text[], text[], integer, integer, text)'), 'EXECUTE'), false)
        AND has_table_privilege('conveyor_reader', 'conveyor.v_consumer_dead_letter', 'SELECT')
        AND has_table_privilege('conveyor_reader', 'conveyor.v_consumer_unmatched', 'SELECT')
        AND NOT has_table_privilege('conveyor_reader', 'conveyor.consumer_registry', 'SELECT')
        AND NOT has_table_privilege('conveyor_worker', 'conveyor.job_subscription', 'SELECT'));

SELECT g.item, g.passed, g.detail FROM pg_temp.gate_result AS g ORDER BY g.seq;

ROLLBACK;
