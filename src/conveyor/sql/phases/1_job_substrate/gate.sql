-- Phase 1 verification gate (ROADMAP §3.3), one (item, passed, detail) row per check:
--   1. the tables, indexes and views exist, and every public fn_job_* function exists as
--      SECURITY DEFINER with search_path pinned (found by name: a later phase may give one a
--      new signature, as phase 4 does fn_job_claim);
--   2. event_outbox regression: its columns and every event that existed before apply are as
--      conveyor_meta.fn_outbox_snapshot() recorded them then (conveyor_meta.phase_snapshot,
--      phase 1, kind 'outbox'); events emitted since are new rows, not changes;
--   3. fn_job_enqueue with queue.job_substrate.enabled = false answers exactly
--      {"refused": true, "reason": "job_substrate_disabled", "flag": "queue.job_substrate.enabled"}
--      and writes nothing;
--   4. v_job_queue_backlog agrees with job_queue (on a freshly applied phase: no rows);
--   5. the runner's ledger (conveyor_meta.phase_object) lists the new tables and functions.
-- A gate is the phase's health check: it passes on any healthy database, whatever later phases
-- are applied and whatever jobs and events it holds. Everything runs in one transaction that is
-- rolled back, so running this file leaves no trace; a check that needs an object tests for it
-- (or catches the error), so a missing object fails its own item instead of the file.
BEGIN;

\ir ../../gate_probes.sql

-- 1. Objects.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'objects: tables, indexes and views of phase 1 exist',
       count(*) FILTER (WHERE to_regclass(o.name) IS NULL) = 0,
       COALESCE('missing: ' || string_agg(o.name, ', ') FILTER (WHERE to_regclass(o.name) IS NULL),
                count(*) || ' relations present')
  FROM unnest(ARRAY[
           'conveyor.job_queue', 'conveyor.job_dead_letter',
           'conveyor.job_queue_claim_idx', 'conveyor.job_queue_idempotency_key_live_idx',
           'conveyor.job_queue_lease_expires_idx', 'conveyor.job_queue_finished_idx',
           'conveyor.job_dead_letter_open_idx', 'conveyor.job_dead_letter_job_id_idx',
           'conveyor.v_job_queue_backlog', 'conveyor.v_job_queue_in_progress',
           'conveyor.v_job_queue_dead_letter_open', 'conveyor.v_dead_letter_all']) AS o(name);

INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'objects: the fn_job_* functions exist, SECURITY DEFINER with search_path pinned',
       count(*) FILTER (WHERE NOT f.ok) = 0,
       COALESCE('missing or not a pinned definer: ' || string_agg(f.name, ', ') FILTER (WHERE NOT f.ok),
                count(*) || ' functions present')
  FROM (SELECT x.name,
               EXISTS (SELECT 1
                         FROM pg_catalog.pg_proc AS p
                        WHERE p.pronamespace = 'conveyor'::regnamespace
                          AND p.proname = x.name
                          AND p.prosecdef
                          AND EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c(setting)
                                       WHERE c.setting LIKE 'search_path=%')) AS ok
          FROM unnest(ARRAY[
                   'fn_job_enqueue', 'fn_job_enqueue_many', 'fn_job_claim', 'fn_job_complete',
                   'fn_job_complete_many', 'fn_job_fail_transient', 'fn_job_fail_permanent',
                   'fn_job_extend_lease', 'fn_job_snooze', 'fn_job_release', 'fn_job_cancel',
                   'fn_job_cancel_ack', 'fn_job_queue_pause', 'fn_job_queue_resume']) AS x(name)
       ) AS f;

-- 2. Regression: event_outbox answers as before apply, for the events that existed then.
-- Checked before anything below could write, so that nothing of this gate can disturb it.
DO $$
DECLARE
    v_item      CONSTANT text := 'event_outbox: columns and the events from before apply are unchanged by phase 1';
    v_snapshots bigint;
    v_before    jsonb;
    v_columns   jsonb;
    v_md5       text;
BEGIN
    SELECT count(*), min(ps.value::text)::jsonb INTO v_snapshots, v_before
      FROM conveyor_meta.phase_snapshot AS ps
     WHERE ps.phase = 1 AND ps.kind = 'outbox';
    IF v_snapshots <> 1 THEN
        RAISE EXCEPTION '% snapshots (phase 1, outbox); expected one: apply the phase with the '
                        'conveyor runner, which snapshots event_outbox before apply', v_snapshots;
    END IF;
    v_columns := conveyor_meta.fn_outbox_snapshot() -> 'columns';
    -- The same checksum fn_outbox_snapshot computes, over the rows that existed at apply.
    SELECT md5(coalesce(string_agg(eo.id::text || '|' || eo.event_type || '|' || eo.payload::text,
                                   E'\n' ORDER BY eo.id), ''))
      INTO v_md5
      FROM conveyor.event_outbox AS eo
     WHERE eo.id <= coalesce((v_before ->> 'max_id')::bigint, 0);
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_columns = v_before -> 'columns' AND v_md5 = v_before ->> 'rows_md5',
            format('columns %s; %s events up to id %s: checksum %s (before apply %s)',
                   CASE WHEN v_columns = v_before -> 'columns' THEN 'unchanged'
                        ELSE format('now %s, before apply %s', v_columns, v_before -> 'columns') END,
                   v_before ->> 'count', coalesce(v_before ->> 'max_id', '0'), v_md5,
                   v_before ->> 'rows_md5'));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('event_outbox: columns and the events from before apply are unchanged by phase 1',
            false, 'error: ' || SQLERRM);
END;
$$;

-- 3. Enqueue is refused while the substrate is disabled, and writes nothing. The flag is set
-- false inside this rolled-back transaction, so the check also holds after enablement.
DO $$
DECLARE
    v_item    CONSTANT text := 'fn_job_enqueue refuses while queue.job_substrate.enabled is false';
    v_flag    jsonb;
    v_answer  jsonb;
    v_written bigint;
BEGIN
    SELECT dc.value INTO v_flag FROM conveyor.dot_config AS dc
     WHERE dc.key = 'queue.job_substrate.enabled';
    UPDATE conveyor.dot_config AS dc SET value = 'false' WHERE dc.key = 'queue.job_substrate.enabled';
    v_answer := conveyor.fn_job_enqueue(kind => 'conveyor.gate.phase1', payload => '{"gate": 1}');
    SELECT (SELECT count(*) FROM conveyor.job_queue AS jq WHERE jq.kind = 'conveyor.gate.phase1')
           + (SELECT count(*) FROM conveyor.job_dead_letter AS dl WHERE dl.kind = 'conveyor.gate.phase1')
      INTO v_written;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_answer = '{"refused": true, "reason": "job_substrate_disabled",
                         "flag": "queue.job_substrate.enabled"}'
            AND v_written = 0 AND v_flag IS NOT NULL,
            format('answer %s; rows written %s; flag as set: %s', v_answer, v_written,
                   coalesce(v_flag::text, 'missing (data.up.sql not applied?)')));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('fn_job_enqueue refuses while queue.job_substrate.enabled is false', false,
            'error: ' || SQLERRM);
END;
$$;

-- 4. The backlog view counts exactly the queued jobs (one statement: one snapshot).
DO $$
DECLARE
    v_item   CONSTANT text := 'v_job_queue_backlog counts exactly the queued jobs of job_queue';
    v_view   bigint;
    v_table  bigint;
BEGIN
    SELECT (SELECT coalesce(sum(b.ready_count + b.scheduled_count), 0)
              FROM conveyor.v_job_queue_backlog AS b),
           (SELECT count(*) FROM conveyor.job_queue AS jq WHERE jq.status = 'queued')
      INTO v_view, v_table;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item, v_view = v_table,
            format('view %s jobs, job_queue %s queued', v_view, v_table));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('v_job_queue_backlog counts exactly the queued jobs of job_queue', false,
            'error: ' || SQLERRM);
END;
$$;

-- 5. Report: the runner's ledger lists the new tables and the functions.
DO $$
DECLARE
    v_item     CONSTANT text := 'report lists the new tables and the function count';
    v_tables   text[];
    v_views    bigint;
    v_recorded bigint;
    v_missing  text[];
BEGIN
    SELECT coalesce(array_agg(DISTINCT regexp_replace(po.object_name, '^conveyor\.', ''))
                        FILTER (WHERE po.object_kind = 'table'), '{}'),
           count(DISTINCT po.object_name) FILTER (WHERE po.object_kind = 'view'),
           count(DISTINCT po.object_name) FILTER (WHERE po.object_kind = 'function')
      INTO v_tables, v_views, v_recorded
      FROM conveyor_meta.phase_object AS po
     WHERE po.phase = 1;
    SELECT array_agg(f.name ORDER BY f.name) INTO v_missing
      FROM unnest(ARRAY['fn_job_enqueue', 'fn_job_enqueue_many', 'fn_job_claim', 'fn_job_complete',
                        'fn_job_complete_many', 'fn_job_fail_transient', 'fn_job_fail_permanent',
                        'fn_job_extend_lease', 'fn_job_snooze', 'fn_job_release', 'fn_job_cancel',
                        'fn_job_cancel_ack']) AS f(name)
     WHERE NOT EXISTS (SELECT 1
                         FROM conveyor_meta.phase_object AS po
                        WHERE po.phase = 1
                          AND po.object_kind = 'function'
                          AND regexp_replace(po.object_name, '^conveyor\.', '') LIKE f.name || '(%');
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_tables @> ARRAY['job_queue', 'job_dead_letter'] AND v_missing IS NULL,
            format('tables: %s; views: %s; functions: %s%s',
                   coalesce(nullif(array_to_string(v_tables, ', '), ''), 'none'), v_views, v_recorded,
                   CASE WHEN v_missing IS NULL THEN ''
                        ELSE '; not recorded: ' || array_to_string(v_missing, ', ') END));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('report lists the new tables and the function count', false,
            'error: ' || SQLERRM || ' (the runner records the objects each phase creates in '
            'conveyor_meta.phase_object: apply the phase with the conveyor runner)');
END;
$$;

SELECT g.item, g.passed, g.detail FROM pg_temp.gate_result AS g ORDER BY g.seq;

ROLLBACK;
