-- fn_customer_send_begin: the send handler's first step, in a transaction of its own that the
-- caller COMMITS before SMTP DATA. Checks, in order: rejected; already sent; a send row still
-- sending (a crash after DATA, or a second job): it and the message go to reconcile for a
-- person and nothing is sent again (reconcile_required); a message in reconcile; and, while
-- customer.approve_required, an approval bound to the CURRENT draft hash (not_approved /
-- approval_void). An approval refusal also clears send_job_id when job_id is that job: it spent
-- its turn, and a later approval enqueues a fresh send job (fn_customer__release_send). The
-- handler completes its job with the refusal as outcome (no dead letter). On success a send row
-- sending is written (with the Message-ID header of the reply) and the draft returned.
CREATE OR REPLACE FUNCTION conveyor.fn_customer_send_begin(
    message_id bigint,
    job_id     bigint DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_msg    customer_message;
    v_send   record;
    v_id     bigint;
    v_header text;
    v_body   record;
    v_reason text;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    v_msg := fn_customer__lock(fn_customer_send_begin.message_id);
    IF v_msg.id IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'message_id', fn_customer_send_begin.message_id);
    END IF;
    IF v_msg.state = 'rejected' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'rejected', 'message_id', v_msg.id);
    END IF;
    SELECT s.id, s.state INTO v_send
      FROM customer_message_send AS s
     WHERE s.message_id = v_msg.id AND s.state IN ('sending', 'sent', 'reconcile')
     ORDER BY s.id DESC
     LIMIT 1
       FOR UPDATE;
    IF v_msg.state = 'sent' OR v_send.state = 'sent' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'already_sent', 'message_id', v_msg.id,
                                  'send_id', v_send.id);
    END IF;
    IF v_send.state = 'sending' THEN
        UPDATE customer_message_send AS s
           SET state = 'reconcile', finished_at = now(),
               detail = 'a second send began while this one was sending: outcome unknown'
         WHERE s.id = v_send.id;
        UPDATE customer_message AS cm SET state = 'reconcile', updated_at = now() WHERE cm.id = v_msg.id;
        PERFORM fn_outbox_emit('customer.message_reconcile',
                               jsonb_build_object('message_id', v_msg.id, 'send_id', v_send.id,
                                                  'cause', 'begin_while_sending'), 'phase7');
        RETURN jsonb_build_object('refused', true, 'reason', 'reconcile_required', 'message_id', v_msg.id,
                                  'send_id', v_send.id);
    END IF;
    IF v_msg.state = 'reconcile' OR v_send.state = 'reconcile' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'reconcile_required', 'message_id', v_msg.id,
                                  'send_id', v_send.id);
    END IF;
    IF v_msg.draft_sha256 IS NULL THEN
        v_reason := 'not_approved';
    ELSIF fn_config_enabled('customer.approve_required')
          AND (v_msg.approved_sha256 IS DISTINCT FROM v_msg.draft_sha256 OR v_msg.state <> 'approved') THEN
        v_reason := CASE WHEN v_msg.approval_voided_at IS NOT NULL THEN 'approval_void' ELSE 'not_approved' END;
    END IF;
    IF v_reason IS NOT NULL THEN
        IF fn_customer_send_begin.job_id IS NOT NULL AND v_msg.send_job_id = fn_customer_send_begin.job_id THEN
            UPDATE customer_message AS cm SET send_job_id = NULL WHERE cm.id = v_msg.id;
        END IF;
        RETURN jsonb_build_object('refused', true, 'reason', v_reason, 'message_id', v_msg.id);
    END IF;

    v_id := nextval('conveyor.customer_message_send_id_seq');
    v_header := format('<conveyor.%s.%s@%s>', v_msg.id, v_id,
                       coalesce(fn_config_get('customer.message_id_domain') #>> '{}', 'localhost'));
    INSERT INTO customer_message_send (id, message_id, draft_sha256, job_id, state, message_id_header)
    OVERRIDING SYSTEM VALUE
    VALUES (v_id, v_msg.id, v_msg.draft_sha256, fn_customer_send_begin.job_id, 'sending', v_header);
    UPDATE customer_message AS cm SET state = 'sending', updated_at = now() WHERE cm.id = v_msg.id;

    SELECT b.draft_to, b.draft_subject, b.draft_text, b.message_id_header, b.references_header INTO v_body
      FROM customer_message_body AS b WHERE b.message_id = v_msg.id;
    RETURN jsonb_build_object(
        'send_id', v_id, 'message_id', v_msg.id, 'draft_sha256', v_msg.draft_sha256,
        'to', to_jsonb(coalesce(v_body.draft_to, '{}')), 'cc', '[]'::jsonb,
        'subject', v_body.draft_subject, 'text', v_body.draft_text,
        'in_reply_to', v_body.message_id_header,
        'references', nullif(btrim(concat_ws(' ', v_body.references_header, v_body.message_id_header)), ''),
        'message_id_header', v_header);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_send_begin(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_send_begin(bigint, bigint) TO conveyor_pii;
COMMENT ON FUNCTION conveyor.fn_customer_send_begin(bigint, bigint) IS
    'PII out: begin the one SMTP send of an approved draft; COMMIT this before DATA. → {"send_id","to","cc","subject","text","in_reply_to","references","message_id_header",...}; or {"refused":true,"reason":"not_approved"|"approval_void"|"rejected"|"already_sent"|"reconcile_required"} (a second begin while sending moves the send to reconcile, never resends). Refuses customer_channel_disabled while customer.channel.enabled is false. EXECUTE: conveyor_pii. Example: SELECT conveyor.fn_customer_send_begin(42, job_id => 1001);';
