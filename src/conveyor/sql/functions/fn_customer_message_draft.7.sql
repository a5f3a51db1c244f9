-- fn_customer_message_draft: store the draft reply of a received or classified message (the draft
-- step's handler calls it in its job's transaction). The draft is hashed (draft_sha256); while
-- customer.approve_required is true the message then awaits a person's approval bound to that
-- hash, otherwise it is approved at once by 'auto' and its send released (fn_customer__store_draft).
CREATE OR REPLACE FUNCTION conveyor.fn_customer_message_draft(
    message_id bigint,
    subject    text,
    text       text,
    actor      text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_msg customer_message;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    IF fn_customer_message_draft.text IS NULL THEN
        RAISE EXCEPTION 'fn_customer_message_draft: text is required'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the reply''s text (subject may be NULL).';
    END IF;
    v_msg := fn_customer__lock(fn_customer_message_draft.message_id);
    IF v_msg.id IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'message_id', fn_customer_message_draft.message_id);
    END IF;
    IF v_msg.state NOT IN ('received', 'classified') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'wrong_state', 'message_id', v_msg.id, 'state', v_msg.state);
    END IF;
    RETURN fn_customer__store_draft(v_msg.id, fn_customer_message_draft.subject, fn_customer_message_draft.text,
                                    coalesce(nullif(fn_customer_message_draft.actor, ''), session_user::text));
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_message_draft(bigint, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_message_draft(bigint, text, text, text) TO conveyor_pii;
COMMENT ON FUNCTION conveyor.fn_customer_message_draft(bigint, text, text, text) IS
    'PII in: store the draft reply of a received|classified message and hash it. → {"ok":true,"message_id","draft_sha256","state":"awaiting_approval"} or, with customer.approve_required false, "state":"approved","approved_by":"auto" (send released). Past drafting → wrong_state; unknown → not_found. Refuses customer_channel_disabled while customer.channel.enabled is false. EXECUTE: conveyor_pii. Example: SELECT conveyor.fn_customer_message_draft(42, subject => ''Re: your invoice'', text => ''Hello, …'', actor => ''template'');';
