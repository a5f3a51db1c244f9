-- fn_customer__store_draft: write a draft (by fn_customer_message_draft or _edit) on a message the
-- caller locked and checked: the new draft hash (to, subject, text) voids any approval of an
-- earlier draft. While customer.approve_required is true the message then awaits approval;
-- otherwise it is approved at once by 'auto' and its send released (fn_customer__release_send).
-- → {"ok": true, "message_id", "draft_sha256", "state", "approved_by"?}.
CREATE OR REPLACE FUNCTION conveyor.fn_customer__store_draft(
    message_id bigint,
    subject    text,
    text_body  text,
    actor      text
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_id      bigint := fn_customer__store_draft.message_id;
    v_to      text[];
    v_hash    text;
    v_voided  boolean;
    v_auto    boolean := NOT fn_config_enabled('customer.approve_required');
BEGIN
    UPDATE customer_message_body AS b
       SET draft_subject = fn_customer__store_draft.subject,
           draft_text = fn_customer__store_draft.text_body,
           draft_to = coalesce(b.draft_to,
                               ARRAY[coalesce(nullif(b.reply_to, ''), b.from_address)]::text[]),
           drafted_by = fn_customer__store_draft.actor,
           drafted_at = now()
     WHERE b.message_id = v_id
    RETURNING b.draft_to INTO v_to;
    v_hash := fn_customer__sha256(jsonb_build_array(to_jsonb(v_to), fn_customer__store_draft.subject,
                                                    fn_customer__store_draft.text_body)::text);

    SELECT cm.approved_sha256 IS NOT NULL INTO v_voided FROM customer_message AS cm WHERE cm.id = v_id;
    UPDATE customer_message AS cm
       SET draft_sha256 = v_hash,
           approved_sha256 = CASE WHEN v_auto THEN v_hash END,
           approved_by = CASE WHEN v_auto THEN 'auto' END,
           approved_at = CASE WHEN v_auto THEN now() END,
           approval_voided_at = CASE WHEN v_voided THEN now() ELSE cm.approval_voided_at END,
           state = CASE WHEN v_auto THEN 'approved' ELSE 'awaiting_approval' END,
           updated_at = now()
     WHERE cm.id = v_id;

    PERFORM fn_outbox_emit('customer.message_drafted',
                           jsonb_build_object('message_id', v_id, 'draft_sha256', v_hash,
                                              'approval_voided', v_voided), 'phase7');
    IF v_auto THEN
        PERFORM fn_outbox_emit('customer.message_approved',
                               jsonb_build_object('message_id', v_id, 'draft_sha256', v_hash,
                                                  'approved_by', 'auto'), 'phase7');
        PERFORM fn_customer__release_send(v_id, 'auto');
        RETURN jsonb_build_object('ok', true, 'message_id', v_id, 'draft_sha256', v_hash,
                                  'state', 'approved', 'approved_by', 'auto');
    END IF;
    RETURN jsonb_build_object('ok', true, 'message_id', v_id, 'draft_sha256', v_hash,
                              'state', 'awaiting_approval');
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer__store_draft(bigint, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_customer__store_draft(bigint, text, text, text) IS
    'Private: store a draft, hash it (voiding an earlier approval), and auto-approve it when customer.approve_required is false';
