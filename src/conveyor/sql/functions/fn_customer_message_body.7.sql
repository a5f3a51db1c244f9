-- fn_customer_message_body: the PII of one message, for conveyor_pii only (the classify and
-- draft handlers, `conveyor messages show` for a role that may read it).
CREATE OR REPLACE FUNCTION conveyor.fn_customer_message_body(message_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_body jsonb;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    SELECT jsonb_build_object(
               'ok', true, 'message_id', cm.id, 'state', cm.state, 'classification', cm.classification,
               'draft_sha256', cm.draft_sha256, 'approved_sha256', cm.approved_sha256,
               'message_id_header', b.message_id_header, 'subject', b.subject, 'from', b.from_address,
               'to', to_jsonb(b.to_addresses), 'cc', to_jsonb(b.cc_addresses), 'reply_to', b.reply_to,
               'in_reply_to', b.in_reply_to, 'references', b.references_header,
               'text', b.text_body, 'html', b.html_body,
               'draft_subject', b.draft_subject, 'draft_to', to_jsonb(b.draft_to), 'draft_text', b.draft_text,
               'drafted_by', b.drafted_by, 'drafted_at', b.drafted_at, 'reject_reason', b.reject_reason)
      INTO v_body
      FROM customer_message AS cm
      JOIN customer_message_body AS b ON b.message_id = cm.id
     WHERE cm.id = fn_customer_message_body.message_id;
    IF v_body IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'message_id', fn_customer_message_body.message_id);
    END IF;
    RETURN v_body;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_message_body(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_message_body(bigint) TO conveyor_pii;
COMMENT ON FUNCTION conveyor.fn_customer_message_body(bigint) IS
    'PII out: a message''s subject, addresses, bodies and draft. → {"ok":true,"message_id","state","subject","from","to","cc","text","html","draft_subject","draft_to","draft_text",...}; unknown → not_found. Refuses customer_channel_disabled while customer.channel.enabled is false. EXECUTE: conveyor_pii. Example: SELECT conveyor.fn_customer_message_body(42);';
