-- Phase 1 verification gate (ROADMAP §3.3), one row per check: (item, passed, detail).
--   * every fn_job_* function exists (SECURITY DEFINER, search_path pinned);
--   * fn_job_enqueue with queue.job_substrate.enabled = false answers exactly
--     {"refused": true, "reason": "job_substrate_disabled"} and writes nothing;
--   * v_job_queue_backlog has no rows;
--   * the runner's ledger (conveyor_meta.phase_object) lists the new tables and the function count;
--   * event_outbox regression: conveyor_meta.fn_outbox_snapshot() equals the snapshot the runner
--     took before apply (conveyor_meta.phase_snapshot, phase 1, kind 'outbox').
-- Everything runs in one transaction that is rolled back, so running this file leaves no trace.
-- The checks live in a DO block so that a missing object fails its own item instead of the file.
BEGIN;

CREATE TEMP TABLE gate_result (
    ord    integer,
    item   text,
    passed boolean,
    detail text
) ON COMMIT DROP;

DO $gate$
DECLARE
    c_functions CONSTANT text[] := ARRAY[
        'fn_job_enqueue(text, jsonb, text, integer, timestamptz, text, integer)',
        'fn_job_enqueue_many(jsonb)',
        'fn_job_claim(text, text[], text[], integer, integer)',
        'fn_job_complete(bigint, uuid, jsonb)',
        'fn_job_complete_many(bigint[], uuid[])',
        'fn_job_fail_transient(bigint, uuid, text, numeric)',
        'fn_job_fail_permanent(bigint, uuid, text)',
        'fn_job_extend_lease(bigint, uuid, integer)',
        'fn_job_snooze(bigint, uuid, numeric)',
        'fn_job_release(bigint, uuid)',
        'fn_job_cancel(bigint, text)',
        'fn_job_cancel_ack(bigint, uuid)'];
    c_refusal   CONSTANT jsonb := '{"refused": true, "reason": "job_substrate_disabled"}';
    v_ord            integer := 0;
    v_signature      text;
    v_proc           regprocedure;
    v_secdef         boolean;
    v_pinned         boolean;
    v_count          bigint;
    v_jobs_before    bigint;
    v_dead_before    bigint;
    v_jobs_after     bigint;
    v_dead_after     bigint;
    v_flag           jsonb;
    v_answer         jsonb;
    v_tables         text[];
    v_views          bigint;
    v_fn_recorded    bigint;
    v_missing        text[];
    v_snapshots      bigint;
    v_before         jsonb;
    v_now            jsonb;
BEGIN
    -- 1. Functions exist, one row each.
    FOREACH v_signature IN ARRAY c_functions LOOP
        v_ord := v_ord + 1;
        v_proc := to_regprocedure('conveyor.' || v_signature);
        IF v_proc IS NULL THEN
            INSERT INTO gate_result VALUES (v_ord, 'function conveyor.' || v_signature || ' exists', false,
                                            'missing');
        ELSE
            SELECT p.prosecdef,
                   EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c(setting) WHERE c.setting LIKE 'search_path=%')
              INTO v_secdef, v_pinned
              FROM pg_catalog.pg_proc AS p
             WHERE p.oid = v_proc;
            INSERT INTO gate_result VALUES (v_ord, 'function conveyor.' || v_signature || ' exists',
                                            v_secdef AND v_pinned,
                                            CASE WHEN v_secdef AND v_pinned THEN 'present, SECURITY DEFINER, search_path pinned'
                                                 WHEN NOT v_secdef THEN 'present but not SECURITY DEFINER'
                                                 ELSE 'present but search_path is not pinned' END);
        END IF;
    END LOOP;

    -- 2. Regression: event_outbox queries answer as before apply. Checked before anything below
    -- could write (the flag update) so that nothing of this gate can disturb it.
    IF to_regprocedure('conveyor_meta.fn_outbox_snapshot()') IS NULL
       OR to_regclass('conveyor_meta.phase_snapshot') IS NULL THEN
        INSERT INTO gate_result VALUES (50, 'event_outbox queries unchanged by phase 1', false,
            'conveyor_meta.fn_outbox_snapshot() or conveyor_meta.phase_snapshot is missing: apply the '
            'phase with the conveyor runner, which snapshots event_outbox before apply');
    ELSE
        SELECT count(*), min(ps.value::text)::jsonb INTO v_snapshots, v_before
          FROM conveyor_meta.phase_snapshot AS ps
         WHERE ps.phase = 1 AND ps.kind = 'outbox';
        v_now := conveyor_meta.fn_outbox_snapshot();
        INSERT INTO gate_result VALUES (50, 'event_outbox queries unchanged by phase 1',
            v_snapshots = 1 AND v_now = v_before,
            CASE WHEN v_snapshots = 0 THEN 'no snapshot (phase 1, outbox) was captured before apply'
                 WHEN v_snapshots > 1 THEN format('%s snapshots (phase 1, outbox); expected one', v_snapshots)
                 WHEN v_now = v_before THEN 'snapshot before apply = snapshot now'
                 ELSE format('before apply %s; now %s', left(v_before::text, 400), left(v_now::text, 400)) END);
    END IF;

    -- 3. Enqueue is refused while the substrate is disabled, and writes nothing. The flag is set
    -- false inside this rolled-back transaction, so the check also holds after enablement.
    IF to_regprocedure('conveyor.fn_job_enqueue(text, jsonb, text, integer, timestamptz, text, integer)') IS NULL
       OR to_regclass('conveyor.job_queue') IS NULL OR to_regclass('conveyor.job_dead_letter') IS NULL THEN
        INSERT INTO gate_result VALUES (20, 'fn_job_enqueue refuses while queue.job_substrate.enabled is false',
                                        false, 'fn_job_enqueue, job_queue or job_dead_letter is missing');
    ELSE
        SELECT dc.value INTO v_flag FROM conveyor.dot_config AS dc WHERE dc.key = 'queue.job_substrate.enabled';
        IF v_flag IS DISTINCT FROM 'false'::jsonb THEN
            UPDATE conveyor.dot_config AS dc SET value = 'false' WHERE dc.key = 'queue.job_substrate.enabled';
        END IF;
        SELECT count(*) INTO v_jobs_before FROM conveyor.job_queue;
        SELECT count(*) INTO v_dead_before FROM conveyor.job_dead_letter;
        v_answer := conveyor.fn_job_enqueue(kind => 'conveyor.gate.probe', payload => '{"gate": 1}');
        SELECT count(*) INTO v_jobs_after FROM conveyor.job_queue;
        SELECT count(*) INTO v_dead_after FROM conveyor.job_dead_letter;
        INSERT INTO gate_result VALUES (20, 'fn_job_enqueue refuses while queue.job_substrate.enabled is false',
            v_answer = c_refusal AND v_jobs_after = v_jobs_before AND v_dead_after = v_dead_before,
            format('answer %s; job_queue rows %s → %s; job_dead_letter rows %s → %s; flag as applied: %s',
                   v_answer, v_jobs_before, v_jobs_after, v_dead_before, v_dead_after,
                   coalesce(v_flag::text, 'missing (data.up.sql not applied?)')));
    END IF;

    -- 4. The backlog view is empty.
    IF to_regclass('conveyor.v_job_queue_backlog') IS NULL THEN
        INSERT INTO gate_result VALUES (30, 'v_job_queue_backlog returns 0 rows', false, 'view is missing');
    ELSE
        SELECT count(*) INTO v_count FROM conveyor.v_job_queue_backlog;
        INSERT INTO gate_result VALUES (30, 'v_job_queue_backlog returns 0 rows', v_count = 0,
                                        format('%s rows', v_count));
    END IF;

    -- 5. Report: the runner's ledger lists the new tables and the functions (every public one).
    IF to_regclass('conveyor_meta.phase_object') IS NULL THEN
        INSERT INTO gate_result VALUES (40, 'report lists the new tables and the function count', false,
            'conveyor_meta.phase_object is missing: the runner records there the objects each phase '
            'creates; apply the phase with the conveyor runner');
    ELSE
        SELECT coalesce(array_agg(DISTINCT regexp_replace(po.object_name, '^conveyor\.', ''))
                            FILTER (WHERE po.object_kind = 'table'), '{}'),
               count(DISTINCT po.object_name) FILTER (WHERE po.object_kind = 'view'),
               count(DISTINCT po.object_name) FILTER (WHERE po.object_kind = 'function')
          INTO v_tables, v_views, v_fn_recorded
          FROM conveyor_meta.phase_object AS po
         WHERE po.phase = 1;
        SELECT array_agg(f.name ORDER BY f.name) INTO v_missing
          FROM (SELECT split_part(sig, '(', 1) AS name FROM unnest(c_functions) AS sig) AS f
         WHERE NOT EXISTS (SELECT 1
                             FROM conveyor_meta.phase_object AS po
                            WHERE po.phase = 1
                              AND po.object_kind = 'function'
                              AND regexp_replace(po.object_name, '^conveyor\.', '') LIKE f.name || '(%');
        INSERT INTO gate_result VALUES (40, 'report lists the new tables and the function count',
            v_tables @> ARRAY['job_queue', 'job_dead_letter'] AND v_missing IS NULL,
            format('tables: %s; views: %s; functions: %s%s',
                   coalesce(nullif(array_to_string(v_tables, ', '), ''), 'none'), v_views, v_fn_recorded,
                   CASE WHEN v_missing IS NULL THEN ''
                        ELSE '; not recorded: ' || array_to_string(v_missing, ', ') END));
    END IF;
END;
$gate$;

SELECT gr.item, gr.passed, gr.detail
  FROM gate_result AS gr
 ORDER BY gr.ord;

ROLLBACK;
