-- fn_customer_message_approve: a person approves the current draft. The approval binds to the
-- draft's hash: draft_sha256 must be the hash the person saw (NULL: the current one, for
-- callers that just showed it); another answers draft_changed and changes nothing. Approver and
-- time are recorded, and fn_customer__release_send makes sure one job sends it (the workflow's
-- approve step is completed, or a fresh send job enqueued when the send step already spent its
-- turn on a voided approval).
CREATE OR REPLACE FUNCTION conveyor.fn_customer_message_approve(
    message_id   bigint,
    draft_sha256 text DEFAULT NULL,
    actor        text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_msg     customer_message;
    v_release jsonb;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    PERFORM fn_customer__actor('fn_customer_message_approve', fn_customer_message_approve.actor, 'Name the person who approves.');
    v_msg := fn_customer__lock(fn_customer_message_approve.message_id);
    IF v_msg.id IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'message_id', fn_customer_message_approve.message_id);
    END IF;
    IF v_msg.state = 'approved' AND v_msg.approved_sha256 = v_msg.draft_sha256
       AND v_msg.draft_sha256 = coalesce(fn_customer_message_approve.draft_sha256, v_msg.draft_sha256) THEN
        RETURN jsonb_build_object('ok', true, 'message_id', v_msg.id, 'already', true,
                                  'draft_sha256', v_msg.draft_sha256, 'approved_by', v_msg.approved_by);
    END IF;
    IF v_msg.state NOT IN ('awaiting_approval', 'drafted') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'wrong_state', 'message_id', v_msg.id, 'state', v_msg.state);
    END IF;
    IF fn_customer_message_approve.draft_sha256 IS NOT NULL
       AND fn_customer_message_approve.draft_sha256 <> v_msg.draft_sha256 THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'draft_changed', 'message_id', v_msg.id,
                                  'draft_sha256', v_msg.draft_sha256);
    END IF;
    UPDATE customer_message AS cm
       SET approved_sha256 = cm.draft_sha256, approved_by = fn_customer_message_approve.actor,
           approved_at = now(), state = 'approved', updated_at = now()
     WHERE cm.id = v_msg.id;
    PERFORM fn_outbox_emit('customer.message_approved',
                           jsonb_build_object('message_id', v_msg.id, 'draft_sha256', v_msg.draft_sha256,
                                              'approved_by', fn_customer_message_approve.actor), 'phase7');
    v_release := fn_customer__release_send(v_msg.id, fn_customer_message_approve.actor);
    RETURN jsonb_build_object('ok', true, 'message_id', v_msg.id, 'draft_sha256', v_msg.draft_sha256,
                              'approved_by', fn_customer_message_approve.actor, 'send', v_release);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_message_approve(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_message_approve(bigint, text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_customer_message_approve(bigint, text, text) IS
    'Operator: approve the current draft, bound to its hash (draft_sha256 NULL = the current one); records approver and time and releases the send. → {"ok":true,"message_id","draft_sha256","approved_by","send":{"released",...}}; already approved → "already":true; another hash → {"refused":true,"reason":"draft_changed","draft_sha256":current}; not awaiting approval → wrong_state; unknown → not_found. Refuses customer_channel_disabled while customer.channel.enabled is false. Example: SELECT conveyor.fn_customer_message_approve(42, draft_sha256 => ''9f86d0…'', actor => ''alice'');';
