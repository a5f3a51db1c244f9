-- fn_customer_message_reconcile: a person decides a send whose outcome is unknown (the message
-- is in reconcile): sent (the customer got it: e.g. found in the Sent folder or the server log)
-- or not_sent. not_sent makes the message approved again and makes sure one job sends it: the
-- send's own job when it is still live (it will begin again), else a fresh send job.
CREATE OR REPLACE FUNCTION conveyor.fn_customer_message_reconcile(
    message_id bigint,
    outcome    text,
    actor      text DEFAULT NULL,
    note       text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_msg     customer_message;
    v_send    record;
    v_release jsonb;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    IF fn_customer_message_reconcile.outcome IS NULL OR fn_customer_message_reconcile.outcome NOT IN ('sent', 'not_sent') THEN
        RAISE EXCEPTION 'fn_customer_message_reconcile: outcome must be sent or not_sent, not %',
                        quote_literal(left(coalesce(fn_customer_message_reconcile.outcome, 'NULL'), 32))
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Check the SMTP server''s log or the Sent folder first.';
    END IF;
    PERFORM fn_customer__actor('fn_customer_message_reconcile', fn_customer_message_reconcile.actor, 'Name the person who decides.');
    v_msg := fn_customer__lock(fn_customer_message_reconcile.message_id);
    IF v_msg.id IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'message_id', fn_customer_message_reconcile.message_id);
    END IF;
    SELECT s.id, s.job_id, s.draft_sha256 INTO v_send
      FROM customer_message_send AS s
     WHERE s.message_id = v_msg.id AND s.state = 'reconcile'
     ORDER BY s.id DESC LIMIT 1
       FOR UPDATE;
    IF v_msg.state <> 'reconcile' OR NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_reconcile', 'message_id', v_msg.id, 'state', v_msg.state);
    END IF;
    UPDATE customer_message_send AS s
       SET state = fn_customer_message_reconcile.outcome, reconciled_by = fn_customer_message_reconcile.actor,
           reconcile_note = left(fn_customer_message_reconcile.note, 1000), finished_at = coalesce(s.finished_at, now())
     WHERE s.id = v_send.id;
    IF fn_customer_message_reconcile.outcome = 'sent' THEN
        UPDATE customer_message AS cm SET state = 'sent', updated_at = now() WHERE cm.id = v_msg.id;
        PERFORM fn_outbox_emit('customer.message_sent',
                               jsonb_build_object('message_id', v_msg.id, 'send_id', v_send.id,
                                                  'draft_sha256', v_send.draft_sha256,
                                                  'reconciled_by', fn_customer_message_reconcile.actor), 'phase7');
        RETURN jsonb_build_object('ok', true, 'message_id', v_msg.id, 'state', 'sent', 'send_id', v_send.id);
    END IF;
    UPDATE customer_message AS cm
       SET state = 'approved', updated_at = now(),
           send_job_id = CASE WHEN EXISTS (SELECT 1 FROM job_queue AS jq
                                            WHERE jq.id = v_send.job_id
                                              AND jq.status IN ('waiting', 'queued', 'in_progress'))
                              THEN v_send.job_id END
     WHERE cm.id = v_msg.id;
    v_release := fn_customer__release_send(v_msg.id, fn_customer_message_reconcile.actor);
    RETURN jsonb_build_object('ok', true, 'message_id', v_msg.id, 'state', 'approved', 'send_id', v_send.id,
                              'send', v_release);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_message_reconcile(bigint, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_message_reconcile(bigint, text, text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_customer_message_reconcile(bigint, text, text, text) IS
    'Operator: decide a send whose outcome is unknown. sent → the message is sent; not_sent → approved again and one job sends it (its live send job, else a fresh one). → {"ok":true,"message_id","state","send_id","send"?}; not in reconcile → {"refused":true,"reason":"not_reconcile","state"}; unknown → not_found. Refuses customer_channel_disabled while customer.channel.enabled is false. Example: SELECT conveyor.fn_customer_message_reconcile(42, ''sent'', actor => ''alice'', note => ''found in the sent folder'');';
