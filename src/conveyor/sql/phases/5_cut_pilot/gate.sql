-- Phase 5 verification gate (ROADMAP §7.2), one (item, passed, detail) row per check:
--   1. the objects exist;
--   2. the settings and rows data.up.sql added: pilot.cut.enabled off, a pilot collection, the
--      four registry rows, the agent's staging.* subscription;
--   3. a record of another collection is dispatched but never gets a job, and its cut refuses;
--   4. one end-to-end MARK → CUT → CLEANUP cycle in the pilot collection in which the operator
--      only marks and approves: dispatch enqueues each step's job, a claim by the agent executor
--      takes it and the built-in step function runs it, completing the job in the same
--      transaction (what conveyor.pilot's handlers do); every status transition is seen in
--      v_iu_staging_record and in the pilot's row of v_queue_health, the target's checksum
--      matches, the staged payload is cleared, and staging.record_cleaned is handled (no job);
--   5. privileges.
-- Everything happens in one transaction that is rolled back, so running it leaves no trace. The
-- flags are switched on inside the transaction (the gate checks the mechanism).
--
-- Own events: fn_outbox_read never returns an event of a still-running transaction, and the
-- gate's events belong to this one. As in the phase 0, 3 and 4 gates they are given txid 1 to
-- stand in for "committed earlier" (no real transaction has an id below 3, so they sort before
-- every real event and lie below the read horizon); the dispatch cursor is put at the beginning
-- and read with batch 1, so each dispatch takes exactly the gate's next event.
BEGIN;

\ir ../../gate_probes.sql

-- 1. Objects.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT * FROM pg_temp.fn_gate__objects(
    'objects: tables, views and functions of phase 5 exist',
    ARRAY['conveyor.pilot_staged_payload', 'conveyor.pilot_cut_target',
          'conveyor.v_iu_staging_record', 'conveyor.v_iu_staging_record_base',
          'conveyor.v_queue_health', 'conveyor.v_queue_health_base',
          'conveyor.fn_pilot_mark(text, text, text, text, text)',
          'conveyor.fn_pilot_route(bigint)',
          'conveyor.fn_pilot_cut(bigint, text, bigint)',
          'conveyor.fn_pilot_verify_cut(bigint, text)',
          'conveyor.fn_pilot_cleanup(bigint, text)']);

-- 2. Settings, registry rows, subscription.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'settings: pilot.cut.enabled is off by default, a pilot collection is named, four registry rows and the agent''s staging.* subscription exist',
       (SELECT dc.value FROM conveyor.dot_config AS dc WHERE dc.key = 'pilot.cut.enabled') IS NOT NULL
       AND (SELECT jsonb_typeof(dc.value) FROM conveyor.dot_config AS dc
             WHERE dc.key = 'pilot.cut.collection') = 'string'
       AND (SELECT count(*) FROM conveyor.consumer_registry AS cr
             WHERE cr.enabled AND cr.action = 'call_function'
               AND cr.target = 'conveyor.fn_pilot_route(bigint)'::regprocedure
               AND (cr.consumer, cr.event_pattern) IN (('pilot.cut', 'staging.record_approved'),
                                                        ('pilot.verify_cut', 'staging.record_consumed'),
                                                        ('pilot.cleanup', 'staging.record_verified'),
                                                        ('pilot.cleaned', 'staging.record_cleaned'))) = 4
       AND EXISTS (SELECT 1 FROM conveyor.job_subscription AS js
                    WHERE js.executor = 'agent' AND js.kind_pattern = 'staging.*'),
       format('pilot.cut.enabled = %s, pilot.cut.collection = %s',
              (SELECT dc.value FROM conveyor.dot_config AS dc WHERE dc.key = 'pilot.cut.enabled'),
              (SELECT dc.value FROM conveyor.dot_config AS dc WHERE dc.key = 'pilot.cut.collection'));

-- 3 and 4. Another collection, then the cycle.
UPDATE conveyor.dot_config AS dc SET value = 'true'
 WHERE dc.key IN ('queue.job_substrate.enabled', 'queue.dispatch.enabled', 'pilot.cut.enabled');
UPDATE conveyor.event_outbox_cursor AS c SET last_txid = '0', last_id = 0
 WHERE c.consumer = 'dispatch';

DO $$
DECLARE
    v_item     CONSTANT text := 'another collection: its approved record is dispatched but gets no job, and a cut refuses not_pilot_collection';
    v_other    text := 'gate_phase5_other_' || txid_current();
    v_rec      bigint;
    v_event    bigint;
    v_dispatch jsonb;
    v_cut      jsonb;
    v_jobs     bigint;
BEGIN
    v_rec := (iu_core.fn_iu_op_mark(collection => v_other, record_key => 'k', actor => 'operator:gate')
              ->> 'record_id')::bigint;
    v_event := (iu_core.fn_iu_op_approve(record_id => v_rec, actor => 'operator:gate') ->> 'event_id')::bigint;
    UPDATE conveyor.event_outbox AS eo SET txid = '1' WHERE eo.id = v_event;
    v_dispatch := conveyor.fn_consumer_dispatch(batch => 1);
    v_cut := conveyor.fn_pilot_cut(record_id => v_rec, actor => 'gate.phase5');
    SELECT count(*) INTO v_jobs FROM conveyor.job_queue AS jq WHERE jq.idempotency_key = 'pilot:' || v_event;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_dispatch @> '{"ok": true, "read": 1, "called": 1, "failed": 0}' AND v_jobs = 0
            AND v_cut ->> 'reason' = 'not_pilot_collection'
            AND (SELECT r.status FROM iu_core.iu_staging_record AS r WHERE r.id = v_rec) = 'approved',
            format('dispatch %s; jobs %s; cut %s', v_dispatch, v_jobs, v_cut));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

DO $$
DECLARE
    v_item   CONSTANT text := '§7.2: one MARK → CUT → CLEANUP cycle runs without the operator touching CUT; every transition is visible in v_iu_staging_record and v_queue_health';
    v_worker CONSTANT text := 'gate.phase5';
    v_coll   text := conveyor.fn_config_get('pilot.cut.collection') #>> '{}';
    v_rec    bigint;
    v_event  bigint;
    v_kind   text;
    v_job    bigint;
    v_token  uuid;
    v_step   jsonb;
    v_seen   text[] := '{}';
    v_ok     boolean := true;
    v_status text;
    v_health record;
    v_final  record;
BEGIN
    v_rec := (conveyor.fn_pilot_mark(collection => v_coll, record_key => 'gate-phase5-' || txid_current(),
                                     payload => 'phase 5 gate payload', actor => 'operator:gate')
              ->> 'record_id')::bigint;
    v_event := (iu_core.fn_iu_op_approve(record_id => v_rec, actor => 'operator:gate') ->> 'event_id')::bigint;
    SELECT r.status INTO v_status FROM conveyor.v_iu_staging_record AS r WHERE r.id = v_rec;
    v_seen := v_seen || ('record ' || v_status);

    FOREACH v_kind IN ARRAY ARRAY['staging.cut', 'staging.verify_cut', 'staging.cleanup'] LOOP
        UPDATE conveyor.event_outbox AS eo SET txid = '1' WHERE eo.id = v_event;
        PERFORM conveyor.fn_consumer_dispatch(batch => 1);
        SELECT jq.id INTO v_job FROM conveyor.job_queue AS jq
         WHERE jq.idempotency_key = 'pilot:' || v_event AND jq.kind = v_kind;
        SELECT h.backlog_count, h.in_progress_count INTO v_health
          FROM conveyor.v_queue_health AS h WHERE h.component = 'pilot:' || v_coll;
        v_ok := v_ok AND v_job IS NOT NULL AND v_health.backlog_count >= 1;
        v_seen := v_seen || format('%s job %s queued (pilot backlog %s)', v_kind, v_job, v_health.backlog_count);

        SELECT (j ->> 'lease_token')::uuid INTO v_token
          FROM jsonb_array_elements(conveyor.fn_job_claim(worker => v_worker, kinds => ARRAY[v_kind],
                                                          batch => 1000, executor => 'agent') -> 'jobs') AS j
         WHERE (j ->> 'job_id')::bigint = v_job;
        SELECT h.in_progress_count INTO v_health
          FROM conveyor.v_queue_health AS h WHERE h.component = 'pilot:' || v_coll;
        SELECT r.step_job_status INTO v_status FROM conveyor.v_iu_staging_record AS r WHERE r.id = v_rec;
        v_ok := v_ok AND v_token IS NOT NULL AND v_health.in_progress_count >= 1 AND v_status = 'in_progress';
        v_seen := v_seen || format('claimed by agent (pilot in progress %s)', v_health.in_progress_count);

        v_step := CASE v_kind
                      WHEN 'staging.cut' THEN conveyor.fn_pilot_cut(record_id => v_rec, actor => v_worker, job_id => v_job)
                      WHEN 'staging.verify_cut' THEN conveyor.fn_pilot_verify_cut(record_id => v_rec, actor => v_worker)
                      ELSE conveyor.fn_pilot_cleanup(record_id => v_rec, actor => v_worker)
                  END;
        v_ok := v_ok AND (conveyor.fn_job_complete(job_id => v_job, lease_token => v_token, result => v_step)
                          -> 'ok') = 'true'::jsonb;
        v_event := (v_step ->> 'event_id')::bigint;
        SELECT r.status, r.step_job_status INTO v_final FROM conveyor.v_iu_staging_record AS r WHERE r.id = v_rec;
        v_ok := v_ok AND v_event IS NOT NULL AND v_final.step_job_status = 'succeeded';
        v_seen := v_seen || format('record %s (job %s)', v_final.status, v_final.step_job_status);
    END LOOP;

    -- staging.record_cleaned: handled by the terminal row, no job.
    UPDATE conveyor.event_outbox AS eo SET txid = '1' WHERE eo.id = v_event;
    PERFORM conveyor.fn_consumer_dispatch(batch => 1);

    SELECT r.status, r.approved_by, r.cut_by, r.cleaned_by, r.cut_target,
           (SELECT t.checksum FROM conveyor.pilot_cut_target AS t WHERE t.record_id = r.id) AS target_sum,
           sp.checksum AS staged_sum, sp.payload AS staged_payload,
           (SELECT string_agg(cd.consumer || ' ' || cd.outcome, ', ' ORDER BY cd.event_id)
              FROM conveyor.consumer_delivery AS cd
              JOIN conveyor.event_outbox AS eo ON eo.id = cd.event_id
             WHERE cd.consumer LIKE 'pilot.%' AND eo.payload ->> 'record_id' = r.id::text) AS deliveries,
           (SELECT count(*) FROM conveyor.job_queue AS jq
             WHERE jq.payload ->> 'record_id' = r.id::text AND jq.kind LIKE 'staging.%') AS jobs
      INTO v_final
      FROM iu_core.iu_staging_record AS r
      JOIN conveyor.pilot_staged_payload AS sp ON sp.record_id = r.id
     WHERE r.id = v_rec;
    v_ok := v_ok AND v_final.status = 'cleaned' AND v_final.approved_by = 'operator:gate'
            AND v_final.cut_by = v_worker AND v_final.cleaned_by = v_worker
            AND v_final.target_sum = v_final.staged_sum AND v_final.staged_payload IS NULL
            AND v_final.jobs = 3
            AND v_final.deliveries = 'pilot.cut called, pilot.verify_cut called, pilot.cleanup called, pilot.cleaned called';
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item, v_ok,
            array_to_string(v_seen, ' → ')
            || format('; cut_by %s, checksum match %s, payload cleared %s, jobs %s; deliveries: %s',
                      v_final.cut_by, v_final.target_sum = v_final.staged_sum,
                      v_final.staged_payload IS NULL, v_final.jobs, v_final.deliveries));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

-- 5. Privileges.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT * FROM pg_temp.fn_gate__privileges(
    'privileges: PUBLIC executes no phase 5 function; definers pin search_path; the worker runs the steps only; the reader reads the views only',
    ARRAY['fn\_pilot%'],
    has_function_privilege('conveyor_worker', 'conveyor.fn_pilot_cut(bigint, text, bigint)', 'EXECUTE')
        AND has_function_privilege('conveyor_worker', 'conveyor.fn_pilot_verify_cut(bigint, text)', 'EXECUTE')
        AND has_function_privilege('conveyor_worker', 'conveyor.fn_pilot_cleanup(bigint, text)', 'EXECUTE')
        AND NOT has_function_privilege('conveyor_worker', 'conveyor.fn_pilot_mark(text, text, text, text, text)', 'EXECUTE')
        AND NOT has_function_privilege('conveyor_worker', 'conveyor.fn_pilot_route(bigint)', 'EXECUTE')
        AND has_table_privilege('conveyor_reader', 'conveyor.v_iu_staging_record', 'SELECT')
        AND has_table_privilege('conveyor_reader', 'conveyor.v_queue_health', 'SELECT')
        AND NOT has_table_privilege('conveyor_reader', 'conveyor.pilot_staged_payload', 'SELECT')
        AND NOT has_table_privilege('conveyor_worker', 'conveyor.pilot_cut_target', 'SELECT'));

SELECT g.item, g.passed, g.detail FROM pg_temp.gate_result AS g ORDER BY g.seq;

ROLLBACK;
