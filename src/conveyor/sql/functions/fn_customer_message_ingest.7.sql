-- fn_customer_message_ingest: store one inbound mail, idempotently, and start its workflow.
-- Idempotent on (account, mailbox, uidvalidity, uid), then on (account, sha256 of Message-ID):
-- a restart mid-poll or a changed UIDVALIDITY re-ingests nothing. The content goes into
-- customer_message_body (PII) only; customer_message gets hashes and the problems the MIME
-- parser found. A body over customer.body.max_bytes is stored truncated (problem 'truncated'):
-- the mail is the customer's and is never refused. A new message emits the workflow
-- customer.message_flow (params {"message_id"}) and customer.message_received, in the caller's
-- transaction. Checks workflow.mot.enabled and queue.job_substrate.enabled up front, so a
-- refusal changes nothing (the adapter retries later; its cursor does not move).
CREATE OR REPLACE FUNCTION conveyor.fn_customer_message_ingest(
    account           text,
    mailbox           text,
    uidvalidity       bigint,
    uid               bigint,
    message_id        text,
    received_at       timestamptz,
    subject           text,
    from_address      text,
    to_addresses      text[],
    cc_addresses      text[],
    reply_to          text,
    in_reply_to       text,
    references_header text,
    text_body         text,
    html_body         text,
    raw_size          integer,
    problems          text[] DEFAULT '{}'
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_max      integer := fn_job__config_number('customer.body.max_bytes', 1048576)::integer;
    v_problems text[]  := coalesce(fn_customer_message_ingest.problems, '{}');
    v_mid      text    := nullif(btrim(fn_customer_message_ingest.message_id), '');
    v_mid_hash text;
    v_text     text    := fn_customer_message_ingest.text_body;
    v_html     text    := fn_customer_message_ingest.html_body;
    v_id       bigint;
    v_dup      text;
    v_emit     jsonb;
    v_send_job bigint;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    IF NOT fn_config_enabled('workflow.mot.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'mot_disabled', 'flag', 'workflow.mot.enabled');
    END IF;
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF fn_customer_message_ingest.account IS NULL OR fn_customer_message_ingest.mailbox IS NULL
       OR fn_customer_message_ingest.uidvalidity IS NULL OR fn_customer_message_ingest.uid IS NULL THEN
        RAISE EXCEPTION 'fn_customer_message_ingest: account, mailbox, uidvalidity and uid are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the IMAP account name, the mailbox, its UIDVALIDITY and the message UID.';
    END IF;
    v_mid_hash := CASE WHEN v_mid IS NOT NULL THEN fn_customer__sha256(v_mid) END;

    -- Fast path for a repeat: no body work.
    SELECT CASE WHEN cm.uidvalidity = fn_customer_message_ingest.uidvalidity
                     AND cm.uid = fn_customer_message_ingest.uid
                     AND cm.mailbox = fn_customer_message_ingest.mailbox THEN 'uid'
                ELSE 'message_id' END, cm.id
      INTO v_dup, v_id
      FROM customer_message AS cm
     WHERE cm.account = fn_customer_message_ingest.account
       AND ((cm.mailbox = fn_customer_message_ingest.mailbox
             AND cm.uidvalidity = fn_customer_message_ingest.uidvalidity
             AND cm.uid = fn_customer_message_ingest.uid)
            OR (v_mid_hash IS NOT NULL AND cm.message_id_sha256 = v_mid_hash))
     ORDER BY 1 DESC  -- 'uid' before 'message_id'
     LIMIT 1;
    IF FOUND THEN
        RETURN jsonb_build_object('id', v_id, 'created', false, 'duplicate', v_dup);
    END IF;

    IF octet_length(v_text) > v_max THEN
        v_text := left(v_text, v_max);
        WHILE octet_length(v_text) > v_max LOOP
            v_text := left(v_text, length(v_text) - greatest((octet_length(v_text) - v_max) / 4, 1));
        END LOOP;
        v_problems := v_problems || 'truncated'::text;
    END IF;
    IF octet_length(v_html) > v_max THEN
        v_html := left(v_html, v_max);
        WHILE octet_length(v_html) > v_max LOOP
            v_html := left(v_html, length(v_html) - greatest((octet_length(v_html) - v_max) / 4, 1));
        END LOOP;
        IF NOT ('truncated' = ANY (v_problems)) THEN
            v_problems := v_problems || 'truncated'::text;
        END IF;
    END IF;

    INSERT INTO customer_message AS cm (account, mailbox, uidvalidity, uid, message_id_sha256, body_sha256,
                                        received_at, problems, raw_size)
    VALUES (fn_customer_message_ingest.account, fn_customer_message_ingest.mailbox,
            fn_customer_message_ingest.uidvalidity, fn_customer_message_ingest.uid, v_mid_hash,
            fn_customer__sha256(jsonb_build_array(v_text, v_html)::text),
            coalesce(fn_customer_message_ingest.received_at, now()), v_problems,
            fn_customer_message_ingest.raw_size)
    ON CONFLICT DO NOTHING
    RETURNING cm.id INTO v_id;
    IF v_id IS NULL THEN  -- a concurrent ingest of the same mail won
        SELECT cm.id, CASE WHEN cm.uid = fn_customer_message_ingest.uid
                            AND cm.uidvalidity = fn_customer_message_ingest.uidvalidity THEN 'uid'
                           ELSE 'message_id' END
          INTO v_id, v_dup
          FROM customer_message AS cm
         WHERE cm.account = fn_customer_message_ingest.account
           AND ((cm.mailbox = fn_customer_message_ingest.mailbox
                 AND cm.uidvalidity = fn_customer_message_ingest.uidvalidity
                 AND cm.uid = fn_customer_message_ingest.uid)
                OR (v_mid_hash IS NOT NULL AND cm.message_id_sha256 = v_mid_hash))
         LIMIT 1;
        RETURN jsonb_build_object('id', v_id, 'created', false, 'duplicate', v_dup);
    END IF;

    INSERT INTO customer_message_body (message_id, message_id_header, subject, from_address, to_addresses,
                                       cc_addresses, reply_to, in_reply_to, references_header, text_body,
                                       html_body)
    VALUES (v_id, v_mid, fn_customer_message_ingest.subject, fn_customer_message_ingest.from_address,
            coalesce(fn_customer_message_ingest.to_addresses, '{}'),
            coalesce(fn_customer_message_ingest.cc_addresses, '{}'),
            fn_customer_message_ingest.reply_to, fn_customer_message_ingest.in_reply_to,
            fn_customer_message_ingest.references_header, v_text, v_html);

    v_emit := fn_mot_graph_emit(template => 'customer.message_flow',
                                params => jsonb_build_object('message_id', v_id),
                                idempotency_key => 'customer_message:' || v_id,
                                created_by => 'phase7');
    IF v_emit ->> 'ok' IS DISTINCT FROM 'true' THEN
        RAISE EXCEPTION 'fn_customer_message_ingest: message %: the workflow could not be emitted: %',
                        v_id, v_emit::text
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Phase 7 ships the template customer.message_flow; re-apply phase 7''s data.';
    END IF;
    SELECT st.job_id INTO v_send_job
      FROM job_workflow_step AS st
     WHERE st.workflow_id = (v_emit ->> 'workflow_id')::bigint
       AND st.kind = 'customer_message_send';
    UPDATE customer_message AS cm
       SET workflow_id = (v_emit ->> 'workflow_id')::bigint, send_job_id = v_send_job
     WHERE cm.id = v_id;

    PERFORM fn_outbox_emit('customer.message_received',
                           jsonb_build_object('message_id', v_id, 'account', fn_customer_message_ingest.account,
                                              'mailbox', fn_customer_message_ingest.mailbox,
                                              'workflow_id', (v_emit ->> 'workflow_id')::bigint,
                                              'problems', to_jsonb(v_problems)), 'phase7');
    RETURN jsonb_build_object('id', v_id, 'created', true,
                              'workflow_id', (v_emit ->> 'workflow_id')::bigint);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_message_ingest(text, text, bigint, bigint, text, timestamptz, text, text,
    text[], text[], text, text, text, text, text, integer, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_message_ingest(text, text, bigint, bigint, text, timestamptz, text,
    text, text[], text[], text, text, text, text, text, integer, text[]) TO conveyor_pii;
COMMENT ON FUNCTION conveyor.fn_customer_message_ingest(text, text, bigint, bigint, text, timestamptz, text, text,
    text[], text[], text, text, text, text, text, integer, text[]) IS
    'PII in: store one inbound mail (content in customer_message_body only) and emit its workflow customer.message_flow. Idempotent on (account, mailbox, uidvalidity, uid), then (account, sha256(Message-ID)). A body over customer.body.max_bytes is stored truncated (problem truncated). → {"id","created":true,"workflow_id"} | {"id","created":false,"duplicate":"uid"|"message_id"}. Refuses customer_channel_disabled (customer.channel.enabled), mot_disabled, job_substrate_disabled. EXECUTE: conveyor_pii. Example: SELECT conveyor.fn_customer_message_ingest(''support'', ''INBOX'', 1700000000, 7, ''<a1@example.com>'', now(), ''Invoice'', ''c@example.com'', ARRAY[''support@example.com''], ''{}'', NULL, NULL, NULL, ''Where is my invoice?'', NULL, 512);';
