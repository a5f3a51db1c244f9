-- fn_customer_message_edit: a person changes the draft (subject and/or text; NULL keeps the
-- current one). The new draft has a new hash, so any approval is void; once sending started or
-- the message was rejected or sent, it answers wrong_state.
CREATE OR REPLACE FUNCTION conveyor.fn_customer_message_edit(
    message_id bigint,
    subject    text DEFAULT NULL,
    text       text DEFAULT NULL,
    actor      text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_msg  customer_message;
    v_body record;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    PERFORM fn_customer__actor('fn_customer_message_edit', fn_customer_message_edit.actor, 'Name the person who edits the draft.');
    v_msg := fn_customer__lock(fn_customer_message_edit.message_id);
    IF v_msg.id IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'message_id', fn_customer_message_edit.message_id);
    END IF;
    IF v_msg.state NOT IN ('drafted', 'awaiting_approval', 'approved') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'wrong_state', 'message_id', v_msg.id, 'state', v_msg.state);
    END IF;
    SELECT b.draft_subject, b.draft_text INTO v_body FROM customer_message_body AS b WHERE b.message_id = v_msg.id;
    RETURN fn_customer__store_draft(v_msg.id, coalesce(fn_customer_message_edit.subject, v_body.draft_subject),
                                    coalesce(fn_customer_message_edit.text, v_body.draft_text),
                                    fn_customer_message_edit.actor);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_message_edit(bigint, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_message_edit(bigint, text, text, text) TO conveyor_pii;
COMMENT ON FUNCTION conveyor.fn_customer_message_edit(bigint, text, text, text) IS
    'PII in: a person edits the draft (NULL keeps subject/text); the new hash voids any approval (state awaiting_approval, or approved by auto when customer.approve_required is false). → {"ok":true,"message_id","draft_sha256","state"}; not drafted/awaiting/approved → wrong_state; unknown → not_found. Refuses customer_channel_disabled while customer.channel.enabled is false. EXECUTE: conveyor_pii. Example: SELECT conveyor.fn_customer_message_edit(42, text => ''Hello again, …'', actor => ''alice'');';
