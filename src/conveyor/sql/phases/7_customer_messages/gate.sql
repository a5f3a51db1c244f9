-- Phase 7 verification gate (ROADMAP §9.2), one (item, passed, detail) row per check:
--   1. the objects exist (tables, views, functions, the trigger), and the flags, event types,
--      subscriptions and the template customer.message_flow v1;
--   2. one round trip through the queue: ingest → classify → draft → (send refused while not
--      approved) → approve → send_begin → send_finish sent, each step's job claimed from a queue
--      of the gate's own and completed, the workflow succeeded;
--   3. no body in any job payload or result, event payload, dead letter or view: the gate's mail
--      carries a sentinel that must be found in customer_message_body only;
--   4. no dead letter of the gate's customer_message_send job (of any of its jobs);
--   5. approval enforced: a second begin answers already_sent, an edit after approval voids it;
--   6. PII readable by conveyor_pii only; refusals while customer.channel.enabled is false.
-- Everything happens in one transaction that is rolled back. The flags are switched inside it.
BEGIN;

CREATE TEMP TABLE gate_result (
    seq    serial,
    item   text    NOT NULL,
    passed boolean NOT NULL,
    detail text    NOT NULL DEFAULT ''
) ON COMMIT DROP;

CREATE TEMP TABLE gate_state (
    key   text PRIMARY KEY,
    value text
) ON COMMIT DROP;

-- 1. Objects and data.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'objects: tables, views, functions and the trigger of phase 7 exist',
       count(*) FILTER (WHERE o.oid IS NULL) = 0
       AND (SELECT count(*) FROM pg_catalog.pg_trigger AS t
             WHERE t.tgname = 'job_queue_customer_approve_released_trg') = 1,
       COALESCE('missing: ' || string_agg(o.name, ', ') FILTER (WHERE o.oid IS NULL),
                count(*) || ' objects and the trigger present')
  FROM (SELECT x.name,
               CASE WHEN x.name LIKE '%(%' THEN to_regprocedure(x.name)::oid
                    ELSE to_regclass(x.name)::oid END AS oid
          FROM unnest(ARRAY[
                   'conveyor.customer_mailbox', 'conveyor.customer_message', 'conveyor.customer_message_body',
                   'conveyor.customer_message_send', 'conveyor.customer_message_send_once_idx',
                   'conveyor.customer_message_message_id_idx',
                   'conveyor.v_customer_message', 'conveyor.v_customer_message_health',
                   'conveyor.fn_customer_message_ingest(text, text, bigint, bigint, text, timestamptz, text, text, text[], text[], text, text, text, text, text, integer, text[])',
                   'conveyor.fn_customer_mailbox_cursor(text, text)',
                   'conveyor.fn_customer_mailbox_advance(text, text, bigint, bigint)',
                   'conveyor.fn_customer_message_classify(bigint, text, text)',
                   'conveyor.fn_customer_message_draft(bigint, text, text, text)',
                   'conveyor.fn_customer_message_edit(bigint, text, text, text)',
                   'conveyor.fn_customer_message_approve(bigint, text, text)',
                   'conveyor.fn_customer_message_revoke(bigint, text)',
                   'conveyor.fn_customer_message_reject(bigint, text, text)',
                   'conveyor.fn_customer_message_body(bigint)',
                   'conveyor.fn_customer_send_begin(bigint, bigint)',
                   'conveyor.fn_customer_send_finish(bigint, text, text)',
                   'conveyor.fn_customer_message_reconcile(bigint, text, text, text)',
                   'conveyor.fn_customer__sha256(text)', 'conveyor.fn_customer__lock(bigint)',
                   'conveyor.fn_customer__actor(text, text, text)',
                   'conveyor.fn_customer__release_send(bigint, text)',
                   'conveyor.fn_customer__store_draft(bigint, text, text, text)',
                   'conveyor.fn_customer__approve_step_released()'
               ]) AS x(name)) AS o;

INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'data: flags, event types, job subscriptions and the template customer.message_flow v1',
       (SELECT count(*) FROM conveyor.dot_config AS dc
         WHERE dc.key IN ('customer.channel.enabled', 'customer.approve_required', 'customer.body.max_bytes')) = 3
       AND (SELECT count(*) FROM conveyor.event_type_registry AS etr WHERE etr.event_type LIKE 'customer.%') >= 9
       AND (SELECT count(*) FROM conveyor.job_subscription AS js WHERE js.kind_pattern LIKE 'customer\_message\_%') = 5
       AND COALESCE((SELECT jsonb_array_length(mt.steps) = 4
                       AND mt.steps @> '[{"key": "approve", "executor": "operator"}]'
                       FROM conveyor.mot_template AS mt
                      WHERE mt.name = 'customer.message_flow' AND mt.version = 1), false),
       'flags, 9 event types, 5 subscriptions, a 4-step template with an operator approval';

-- 2.-5. The round trip.
DO $$
DECLARE
    v_item     text := 'round trip: ingest → classify → draft → approve → send through the queue; workflow succeeded';
    v_queue    text := 'gate.phase7.' || txid_current();
    v_sentinel text := 'gate-sentinel-' || md5(random()::text || clock_timestamp()::text);
    v_ingest   jsonb;
    v_id       bigint;
    v_wf       bigint;
    v_claim    jsonb;
    v_job      jsonb;
    v_draft    jsonb;
    v_refused  jsonb;
    v_begin    jsonb;
    v_finish   jsonb;
    v_again    jsonb;
    v_approve  jsonb;
    v_seen     text := '';
    v_step     text;
BEGIN
    PERFORM conveyor.fn_config_set(f.key, 'true')
       FROM unnest(ARRAY['customer.channel.enabled', 'customer.approve_required', 'workflow.mot.enabled',
                         'queue.job_substrate.enabled']) AS f(key);
    v_ingest := conveyor.fn_customer_message_ingest(
        'gate.phase7', 'INBOX', 1, 1, '<' || v_sentinel || '@gate.invalid>', now(),
        'Subject ' || v_sentinel, v_sentinel || '@customer.invalid', ARRAY['support@gate.invalid'], '{}',
        NULL, NULL, NULL, 'Body ' || v_sentinel, '<p>' || v_sentinel || '</p>', 100);
    v_id := (v_ingest ->> 'id')::bigint;
    v_wf := (v_ingest ->> 'workflow_id')::bigint;
    INSERT INTO pg_temp.gate_state VALUES ('sentinel', v_sentinel), ('message_id', v_id), ('workflow_id', v_wf);
    UPDATE conveyor.job_queue AS jq SET queue = v_queue WHERE jq.workflow_id = v_wf;

    FOREACH v_step IN ARRAY ARRAY['customer_message_classify', 'customer_message_draft'] LOOP
        v_claim := conveyor.fn_job_claim(worker => 'gate.phase7', queues => ARRAY[v_queue], batch => 1);
        v_job := v_claim -> 'jobs' -> 0;
        v_seen := v_seen || (v_job ->> 'kind') || ' ' || (v_job -> 'payload')::text || '; ';
        IF v_job ->> 'kind' = 'customer_message_classify' THEN
            PERFORM conveyor.fn_customer_message_classify(v_id, 'support', 'gate');
        ELSE
            v_draft := conveyor.fn_customer_message_draft(v_id, 'Re: gate', 'gate reply', 'gate');
        END IF;
        PERFORM conveyor.fn_job_complete((v_job ->> 'job_id')::bigint, (v_job ->> 'lease_token')::uuid,
                                         jsonb_build_object('outcome', 'ok'));
    END LOOP;

    v_refused := conveyor.fn_customer_send_begin(v_id, NULL);
    v_approve := conveyor.fn_customer_message_approve(v_id, v_draft ->> 'draft_sha256', 'gate');
    v_claim := conveyor.fn_job_claim(worker => 'gate.phase7', queues => ARRAY[v_queue], batch => 1);
    v_job := v_claim -> 'jobs' -> 0;
    v_seen := v_seen || (v_job ->> 'kind') || ' ' || (v_job -> 'payload')::text;
    v_begin := conveyor.fn_customer_send_begin(v_id, (v_job ->> 'job_id')::bigint);
    v_finish := conveyor.fn_customer_send_finish((v_begin ->> 'send_id')::bigint, 'sent', '250 2.0.0 gate');
    v_again := conveyor.fn_customer_send_begin(v_id, (v_job ->> 'job_id')::bigint);
    PERFORM conveyor.fn_job_complete((v_job ->> 'job_id')::bigint, (v_job ->> 'lease_token')::uuid,
                                     jsonb_build_object('outcome', 'sent', 'send_id', v_begin -> 'send_id'));

    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_ingest @> '{"created": true}'
            AND v_seen = format('customer_message_classify {"message_id": %s}; customer_message_draft {"message_id": %s}; customer_message_send {"message_id": %s}', v_id, v_id, v_id)
            AND v_finish @> '{"ok": true, "state": "sent"}'
            AND v_begin ->> 'text' = 'gate reply'
            AND (SELECT cm.state FROM conveyor.v_customer_message AS cm WHERE cm.id = v_id) = 'sent'
            AND (SELECT jw.status FROM conveyor.job_workflow AS jw WHERE jw.id = v_wf) = 'succeeded'
            AND (SELECT st.completed_by FROM conveyor.job_workflow_step AS st
                  WHERE st.workflow_id = v_wf AND st.step_key = 'approve') = 'gate',
            format('jobs: %s; finish %s', v_seen, v_finish));

    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES ('approval enforced: no send before approval, approval bound to the draft, never a second send',
            v_refused @> '{"refused": true, "reason": "not_approved"}'
            AND v_approve @> '{"ok": true, "send": {"released": "workflow_step"}}'
            AND v_again @> '{"refused": true, "reason": "already_sent"}'
            AND (SELECT count(*) FROM conveyor.customer_message_send AS s WHERE s.message_id = v_id) = 1,
            format('before approval: %s; approve: %s; second begin: %s', v_refused, v_approve, v_again));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

-- 3. The sentinel is in customer_message_body only.
DO $$
DECLARE
    v_item     text := 'PII: the gate mail''s sentinel is in customer_message_body only (no job payload or result, event, dead letter or view)';
    v_sentinel text := (SELECT gs.value FROM pg_temp.gate_state AS gs WHERE gs.key = 'sentinel');
    v_view     record;
    v_found    text[] := '{}';
    v_hit      boolean;
BEGIN
    IF v_sentinel IS NULL THEN
        INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'the round trip did not run');
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM conveyor.job_queue AS jq
                WHERE strpos(jq.payload::text || coalesce(jq.result::text, '') || coalesce(jq.last_error, ''), v_sentinel) > 0) THEN
        v_found := v_found || 'job_queue'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM conveyor.event_outbox AS eo WHERE strpos(eo.payload::text, v_sentinel) > 0) THEN
        v_found := v_found || 'event_outbox'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM conveyor.job_dead_letter AS dl WHERE strpos(dl::text, v_sentinel) > 0) THEN
        v_found := v_found || 'job_dead_letter'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM conveyor.customer_message AS cm WHERE strpos(cm::text, v_sentinel) > 0) THEN
        v_found := v_found || 'customer_message'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM conveyor.job_workflow AS jw WHERE strpos(jw::text, v_sentinel) > 0) THEN
        v_found := v_found || 'job_workflow'::text;
    END IF;
    FOR v_view IN
        SELECT format('%I.%I', v.schemaname, v.viewname) AS name
          FROM pg_catalog.pg_views AS v
         WHERE v.schemaname = 'conveyor' AND v.viewname LIKE 'v\_customer%'
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s AS x WHERE strpos(x::text, $1) > 0)', v_view.name)
           INTO v_hit USING v_sentinel;
        IF v_hit THEN
            v_found := v_found || v_view.name;
        END IF;
    END LOOP;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_found = '{}' AND EXISTS (SELECT 1 FROM conveyor.customer_message_body AS b
                                         WHERE strpos(b.text_body, v_sentinel) > 0),
            CASE WHEN v_found = '{}' THEN 'only in customer_message_body'
                 ELSE 'found in: ' || array_to_string(v_found, ', ') END);
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

-- 4. No dead letter of the gate's jobs (customer_message_send among them).
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'DLQ: no dead letter of the gate''s customer_message_send (or any of its jobs)',
       gs.value IS NOT NULL AND count(dl.id) = 0,
       count(dl.id) || ' dead letters of workflow ' || COALESCE(gs.value, '(none)')
  FROM pg_temp.gate_state AS gs
  LEFT JOIN conveyor.job_dead_letter AS dl ON (dl.job ->> 'workflow_id') = gs.value
 WHERE gs.key = 'workflow_id'
 GROUP BY gs.value;

-- 5. An edit voids an approval.
DO $$
DECLARE
    v_item text := 'approval voided by an edit: send_begin answers approval_void, a new approval releases a fresh send job';
    v_id   bigint;
    v_d    jsonb;
    v_e    jsonb;
    v_b    jsonb;
    v_a    jsonb;
BEGIN
    v_id := (conveyor.fn_customer_message_ingest('gate.phase7', 'INBOX', 1, 2, NULL, now(), 's', 'a@gate.invalid',
                                                 '{}', '{}', NULL, NULL, NULL, 'b', NULL, 1) ->> 'id')::bigint;
    UPDATE conveyor.job_queue AS jq SET queue = 'gate.phase7.void.' || txid_current()
     WHERE jq.workflow_id = (SELECT cm.workflow_id FROM conveyor.customer_message AS cm WHERE cm.id = v_id);
    v_d := conveyor.fn_customer_message_draft(v_id, 'Re', 'one', 'gate');
    PERFORM conveyor.fn_customer_message_approve(v_id, v_d ->> 'draft_sha256', 'gate');
    v_e := conveyor.fn_customer_message_edit(v_id, NULL, 'two', 'gate');
    v_b := conveyor.fn_customer_send_begin(v_id, (SELECT cm.send_job_id FROM conveyor.customer_message AS cm WHERE cm.id = v_id));
    v_a := conveyor.fn_customer_message_approve(v_id, v_d ->> 'draft_sha256', 'gate');
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_b @> '{"refused": true, "reason": "approval_void"}'
            AND v_a @> '{"refused": true, "reason": "draft_changed"}'
            AND v_e ->> 'draft_sha256' <> v_d ->> 'draft_sha256',
            format('begin after edit: %s; approve of the old hash: %s', v_b, v_a));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

-- 6. Privileges and refusals.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'privileges: only conveyor_pii reads customer_message_body and calls the PII functions; the reader sees the views; PUBLIC executes nothing',
       count(*) FILTER (WHERE EXISTS (SELECT 1
                                        FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) AS a
                                       WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) = 0
       AND COALESCE(has_table_privilege('conveyor_pii', to_regclass('conveyor.customer_message_body'), 'SELECT'), false)
       AND NOT COALESCE(has_table_privilege('conveyor_worker', to_regclass('conveyor.customer_message_body'), 'SELECT'), true)
       AND NOT COALESCE(has_table_privilege('conveyor_reader', to_regclass('conveyor.customer_message_body'), 'SELECT'), true)
       AND NOT COALESCE(has_table_privilege('conveyor_reader', to_regclass('conveyor.customer_message'), 'SELECT'), true)
       AND COALESCE(has_table_privilege('conveyor_reader', to_regclass('conveyor.v_customer_message'), 'SELECT'), false)
       AND count(*) FILTER (WHERE p.proname IN ('fn_customer_message_ingest', 'fn_customer_send_begin',
                                                'fn_customer_message_body', 'fn_customer_message_draft',
                                                'fn_customer_message_edit')
                              AND (NOT has_function_privilege('conveyor_pii', p.oid, 'EXECUTE')
                                   OR has_function_privilege('conveyor_worker', p.oid, 'EXECUTE')
                                   OR has_function_privilege('conveyor_reader', p.oid, 'EXECUTE'))) = 0,
       count(*) || ' functions checked'
  FROM pg_catalog.pg_proc AS p
  JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
 WHERE n.nspname = 'conveyor' AND p.proname LIKE 'fn\_customer%';

DO $$
DECLARE
    v_item text := 'refusals: with customer.channel.enabled false the functions refuse customer_channel_disabled';
    v_a    jsonb;
    v_b    jsonb;
BEGIN
    PERFORM conveyor.fn_config_set('customer.channel.enabled', 'false');
    v_a := conveyor.fn_customer_mailbox_cursor('gate.phase7', 'INBOX');
    v_b := conveyor.fn_customer_send_begin(-1, NULL);
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_a @> '{"refused": true, "reason": "customer_channel_disabled", "flag": "customer.channel.enabled"}'
            AND v_b @> '{"refused": true, "reason": "customer_channel_disabled"}',
            format('cursor: %s; send_begin: %s', v_a, v_b));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

SELECT g.item, g.passed, g.detail FROM pg_temp.gate_result AS g ORDER BY g.seq;

ROLLBACK;
