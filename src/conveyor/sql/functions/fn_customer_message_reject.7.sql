-- fn_customer_message_reject: a person decides a message gets no reply. Any approval is void,
-- the workflow is cancelled (its waiting steps never run), and a send job still queued gets
-- rejected from fn_customer_send_begin. The reason is a person's words and may quote the mail,
-- so it is kept with the PII (customer_message_body.reject_reason), not in the event.
CREATE OR REPLACE FUNCTION conveyor.fn_customer_message_reject(
    message_id bigint,
    actor      text DEFAULT NULL,
    reason     text DEFAULT NULL
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
    PERFORM fn_customer__actor('fn_customer_message_reject', fn_customer_message_reject.actor, 'Name the person who rejects the message.');
    v_msg := fn_customer__lock(fn_customer_message_reject.message_id);
    IF v_msg.id IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'message_id', fn_customer_message_reject.message_id);
    END IF;
    IF v_msg.state IN ('sending', 'sent', 'reconcile', 'rejected') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'wrong_state', 'message_id', v_msg.id, 'state', v_msg.state);
    END IF;
    UPDATE customer_message AS cm
       SET state = 'rejected', approved_sha256 = NULL, approved_by = NULL, approved_at = NULL,
           approval_voided_at = CASE WHEN cm.approved_sha256 IS NOT NULL THEN now() ELSE cm.approval_voided_at END,
           rejected_by = fn_customer_message_reject.actor, rejected_at = now(), updated_at = now()
     WHERE cm.id = v_msg.id;
    UPDATE customer_message_body AS b SET reject_reason = fn_customer_message_reject.reason
     WHERE b.message_id = v_msg.id;
    IF v_msg.workflow_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM job_workflow AS jw WHERE jw.id = v_msg.workflow_id AND jw.status = 'active') THEN
        PERFORM fn_job_workflow_cancel(v_msg.workflow_id, 'customer message rejected', fn_customer_message_reject.actor);
    END IF;
    PERFORM fn_outbox_emit('customer.message_rejected',
                           jsonb_build_object('message_id', v_msg.id, 'rejected_by', fn_customer_message_reject.actor),
                           'phase7');
    RETURN jsonb_build_object('ok', true, 'message_id', v_msg.id, 'state', 'rejected');
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_message_reject(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_message_reject(bigint, text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_customer_message_reject(bigint, text, text) IS
    'Operator: no reply for this message; voids any approval and cancels its workflow (the reason is kept with the PII). → {"ok":true,"message_id","state":"rejected"}; sending/sent/reconcile/rejected → wrong_state; unknown → not_found. Refuses customer_channel_disabled while customer.channel.enabled is false. Example: SELECT conveyor.fn_customer_message_reject(42, actor => ''alice'', reason => ''spam'');';
