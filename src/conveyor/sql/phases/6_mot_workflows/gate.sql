-- Phase 6 verification gate (ROADMAP §8.2), one (item, passed, detail) row per check:
--   1. the objects exist;
--   2. no mot in any executor field: every executor column of the conveyor schema and every
--      template step is scanned, and the CHECKs keep it so (executor_kind refuses mot, a template
--      naming mot is refused naming the step);
--   3. the shipped template staging.cut_pipeline plans (dry run) as 6 steps, one root, the
--      operator's approval among them;
--   4. one MOT-generated workflow is visible in v_job_workflow_health and advances through
--      active → succeeded: a gate template (a → b (operator), c → d) is emitted on a queue of the
--      gate's own, each step is claimed and completed (b by fn_job_workflow_complete_step), and
--      the view is read after every step;
--   5. privileges.
-- Everything happens in one transaction that is rolled back, so running it leaves no trace. The
-- flags are switched on inside the transaction (the gate checks the mechanism).
BEGIN;

\ir ../../gate_probes.sql

-- 1. Objects.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT * FROM pg_temp.fn_gate__objects(
    'objects: tables, views, functions and triggers of phase 6 exist',
    ARRAY['conveyor.mot_template', 'conveyor.job_workflow', 'conveyor.job_workflow_step',
          'conveyor.v_mot_template', 'conveyor.v_job_workflow', 'conveyor.v_job_workflow_step',
          'conveyor.v_job_workflow_health',
          'conveyor.fn_mot_template_register(text, jsonb, text, text)',
          'conveyor.fn_mot_graph_emit(text, integer, jsonb, text, boolean, text)',
          'conveyor.fn_job_workflow_cancel(bigint, text, text)',
          'conveyor.fn_job_workflow_complete_step(bigint, text, text, jsonb)',
          'conveyor.fn_job_workflow_refresh()',
          'conveyor.fn_job_workflow_parents(bigint)'],
    triggers => ARRAY['job_queue_workflow_step_ended_trg', 'job_queue_workflow_step_dead_lettered_trg',
                      'job_dead_letter_workflow_replay_trg', 'mot_template_guard_trg']);

-- 2. No mot executor anywhere, and the CHECKs that keep it so.
DO $$
DECLARE
    v_item      CONSTANT text := 'no mot value in any executor field (every executor column and template step scanned; CHECKs refuse one)';
    v_column    record;
    v_found     bigint;
    v_total     bigint := 0;
    v_columns   text := '';
    v_kind_err  text := '(accepted)';
    v_tpl_err   text := '(accepted)';
BEGIN
    FOR v_column IN
        SELECT c.table_name, c.column_name
          FROM information_schema.columns AS c
          JOIN information_schema.tables AS t
            ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
         WHERE c.table_schema = 'conveyor' AND c.column_name LIKE '%executor%'
           AND c.data_type = 'text'
         ORDER BY 1, 2
    LOOP
        EXECUTE format('SELECT count(*) FROM conveyor.%I WHERE lower(%I) = ''mot''',
                       v_column.table_name, v_column.column_name) INTO v_found;
        v_total := v_total + v_found;
        v_columns := v_columns || v_column.table_name || '.' || v_column.column_name || ' ';
    END LOOP;
    SELECT v_total + count(*) INTO v_total
      FROM conveyor.mot_template AS mt
     WHERE jsonb_path_exists(mt.steps, '$[*].executor ? (@ like_regex "^mot$" flag "i")');
    BEGIN
        INSERT INTO conveyor.executor_kind (executor, description) VALUES ('mot', 'gate probe');
    EXCEPTION WHEN check_violation THEN
        GET STACKED DIAGNOSTICS v_kind_err = CONSTRAINT_NAME;
    END;
    BEGIN
        PERFORM conveyor.fn_mot_template_register(
            'gate.phase6.mot', '[{"key": "plan", "kind": "gate.phase6", "executor": "mot"}]');
    EXCEPTION WHEN invalid_parameter_value THEN
        v_tpl_err := SQLERRM;
    END;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_total = 0 AND v_columns <> '' AND v_kind_err = 'executor_kind_not_mot_check'
            AND v_tpl_err LIKE '%step plan%mot%',
            format('%s mot values in %s+ mot_template.steps; executor_kind insert refused by %s; template refused: %s',
                   v_total, v_columns, v_kind_err, v_tpl_err));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

-- 3 and 4. The shipped template plans; a workflow advances active → succeeded.
DO $$
DECLARE
    v_item_tpl CONSTANT text := 'the cut pipeline template plans as 6 steps with one root and an operator approval (dry run, nothing written)';
    v_item     CONSTANT text := 'one MOT-generated workflow visible in v_job_workflow_health advancing through active → succeeded';
    v_queue    CONSTANT text := 'gate.phase6.' || pg_current_xact_id()::text;
    v_plan     jsonb;
    v_emit     jsonb;
    v_wf       bigint;
    v_seen     text := '';
    v_claim    jsonb;
    v_job      jsonb;
    v_answer   jsonb;
    v_status   text;
    v_health   record;
    v_rounds   integer := 0;
BEGIN
    UPDATE conveyor.dot_config AS dc SET value = 'true'
     WHERE dc.key IN ('workflow.mot.enabled', 'queue.job_substrate.enabled');

    v_plan := conveyor.fn_mot_graph_emit('staging.cut_pipeline', params => '{"record_id": 0}', dry_run => true);
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    SELECT v_item_tpl,
           v_plan @> '{"ok": true, "dry_run": true}'
           AND jsonb_array_length(v_plan -> 'steps') = 6
           AND (SELECT count(*) FROM jsonb_array_elements(v_plan -> 'steps') AS s WHERE s ->> 'status' = 'queued') = 1
           AND (SELECT count(*) FROM jsonb_array_elements(v_plan -> 'steps') AS s WHERE s ->> 'executor' = 'operator') = 1
           AND NOT EXISTS (SELECT 1 FROM conveyor.job_workflow AS jw WHERE jw.template = 'staging.cut_pipeline'
                              AND jw.created_at = now()),
           (SELECT string_agg(s ->> 'key' || ' (' || (s ->> 'executor') || ', ' || (s ->> 'status') || ')', ' → ')
              FROM jsonb_array_elements(v_plan -> 'steps') AS s);

    PERFORM conveyor.fn_mot_template_register('gate.phase6', jsonb_build_array(
        jsonb_build_object('key', 'a', 'kind', 'gate.phase6', 'executor', 'dot', 'queue', v_queue),
        jsonb_build_object('key', 'b', 'kind', 'gate.phase6', 'executor', 'operator', 'queue', v_queue,
                           'parents', jsonb_build_array('a')),
        jsonb_build_object('key', 'c', 'kind', 'gate.phase6', 'executor', 'dot', 'queue', v_queue,
                           'parents', jsonb_build_array('a')),
        jsonb_build_object('key', 'd', 'kind', 'gate.phase6', 'executor', 'dot', 'queue', v_queue,
                           'parents', jsonb_build_array('b', 'c'))));
    v_emit := conveyor.fn_mot_graph_emit('gate.phase6', params => '{"gate": true}');
    v_wf := (v_emit ->> 'workflow_id')::bigint;

    LOOP
        v_rounds := v_rounds + 1;
        EXIT WHEN v_rounds > 10;
        SELECT h.status, h.steps_succeeded, h.waiting_on INTO v_health
          FROM conveyor.v_job_workflow_health AS h WHERE h.workflow_id = v_wf;
        IF NOT FOUND THEN
            SELECT jw.status INTO v_status FROM conveyor.job_workflow AS jw WHERE jw.id = v_wf;
            v_seen := v_seen || ' | ' || v_status;
            EXIT;
        END IF;
        v_seen := v_seen || CASE WHEN v_seen = '' THEN '' ELSE ' | ' END
                  || format('%s (%s done, waiting on %s)', v_health.status, v_health.steps_succeeded,
                            array_to_string(v_health.waiting_on, ','));
        v_claim := conveyor.fn_job_claim(worker => 'gate.phase6', queues => ARRAY[v_queue], batch => 10);
        FOR v_job IN SELECT * FROM jsonb_array_elements(v_claim -> 'jobs') LOOP
            v_answer := conveyor.fn_job_complete((v_job ->> 'job_id')::bigint, (v_job ->> 'lease_token')::uuid,
                                                 '{"ok": true}');
        END LOOP;
        IF (SELECT st.state FROM conveyor.v_job_workflow_step AS st
             WHERE st.workflow_id = v_wf AND st.step_key = 'b') = 'queued' THEN
            v_answer := conveyor.fn_job_workflow_complete_step(v_wf, 'b', completed_by => 'gate');
        END IF;
    END LOOP;

    SELECT jw.status INTO v_status FROM conveyor.job_workflow AS jw WHERE jw.id = v_wf;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_emit @> '{"ok": true, "steps": 4, "queued": 1}' AND v_status = 'succeeded'
            AND v_seen LIKE 'active (0 done, waiting on a)%active (3 done, waiting on d)%succeeded'
            AND (SELECT st.completed_by FROM conveyor.v_job_workflow_step AS st
                  WHERE st.workflow_id = v_wf AND st.step_key = 'b') = 'gate',
            format('emit %s; seen: %s', v_emit, v_seen));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

-- 5. Privileges.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT * FROM pg_temp.fn_gate__privileges(
    'privileges: PUBLIC executes no phase 6 function; definers pin search_path; worker emits and reads parents, admin completes operator steps and refreshes, reader reads the views only',
    ARRAY['fn\_mot%', 'fn\_job\_workflow%'],
    COALESCE(has_function_privilege('conveyor_worker', to_regprocedure('conveyor.fn_mot_graph_emit(text, integer, jsonb, text, boolean, text)'), 'EXECUTE'), false)
        AND COALESCE(has_function_privilege('conveyor_worker', to_regprocedure('conveyor.fn_job_workflow_parents(bigint)'), 'EXECUTE'), false)
        AND NOT COALESCE(has_function_privilege('conveyor_worker', to_regprocedure('conveyor.fn_job_workflow_complete_step(bigint, text, text, jsonb)'), 'EXECUTE'), true)
        AND NOT COALESCE(has_function_privilege('conveyor_worker', to_regprocedure('conveyor.fn_mot_template_register(text, jsonb, text, text)'), 'EXECUTE'), true)
        AND COALESCE(has_function_privilege('conveyor_admin', to_regprocedure('conveyor.fn_job_workflow_refresh()'), 'EXECUTE'), false)
        AND COALESCE(has_table_privilege('conveyor_reader', to_regclass('conveyor.v_job_workflow_health'), 'SELECT'), false)
        AND NOT COALESCE(has_table_privilege('conveyor_reader', to_regclass('conveyor.job_workflow'), 'SELECT'), true)
        AND NOT COALESCE(has_table_privilege('conveyor_worker', to_regclass('conveyor.mot_template'), 'SELECT'), true));

SELECT g.item, g.passed, g.detail FROM pg_temp.gate_result AS g ORDER BY g.seq;

ROLLBACK;
