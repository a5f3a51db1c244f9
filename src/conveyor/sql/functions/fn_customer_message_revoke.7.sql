-- fn_customer_message_revoke: a person withdraws an approval before sending starts; the message
-- awaits approval again. A send job already released then gets approval_void from
-- fn_customer_send_begin and sends nothing.
CREATE OR REPLACE FUNCTION conveyor.fn_customer_message_revoke(
    message_id bigint,
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
    PERFORM fn_customer__actor('fn_customer_message_revoke', fn_customer_message_revoke.actor, 'Name the person who revokes the approval.');
    v_msg := fn_customer__lock(fn_customer_message_revoke.message_id);
    IF v_msg.id IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'message_id', fn_customer_message_revoke.message_id);
    END IF;
    IF v_msg.state <> 'approved' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_approved', 'message_id', v_msg.id, 'state', v_msg.state);
    END IF;
    UPDATE customer_message AS cm
       SET approved_sha256 = NULL, approved_by = NULL, approved_at = NULL, approval_voided_at = now(),
           state = 'awaiting_approval', updated_at = now()
     WHERE cm.id = v_msg.id;
    PERFORM fn_outbox_emit('customer.message_approval_voided',
                           jsonb_build_object('message_id', v_msg.id, 'draft_sha256', v_msg.draft_sha256,
                                              'reason', 'revoked', 'by', fn_customer_message_revoke.actor), 'phase7');
    RETURN jsonb_build_object('ok', true, 'message_id', v_msg.id, 'state', 'awaiting_approval');
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_message_revoke(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_message_revoke(bigint, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_customer_message_revoke(bigint, text) IS
    'Operator: withdraw the approval of a message not yet sending (it awaits approval again; a released send job gets approval_void). → {"ok":true,"message_id","state":"awaiting_approval"}; not approved → {"refused":true,"reason":"not_approved","state"}; unknown → not_found. Refuses customer_channel_disabled while customer.channel.enabled is false. Example: SELECT conveyor.fn_customer_message_revoke(42, actor => ''alice'');';
