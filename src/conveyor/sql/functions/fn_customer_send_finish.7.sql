-- fn_customer_send_finish: the outcome of the SMTP transaction fn_customer_send_begin began.
-- sent (250 after DATA) → sent; not_sent (failed before DATA: connect, TLS, AUTH, MAIL/RCPT
-- refused) → the message is approved again and the send job may retry (a new begin); unknown
-- (failed after DATA started) → reconcile, for a person. detail is the SMTP reply code and text
-- (at most 500 characters kept), never content.
CREATE OR REPLACE FUNCTION conveyor.fn_customer_send_finish(
    send_id bigint,
    outcome text,
    detail  text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_send  record;
    v_state text;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    IF fn_customer_send_finish.outcome IS NULL OR fn_customer_send_finish.outcome NOT IN ('sent', 'not_sent', 'unknown') THEN
        RAISE EXCEPTION 'fn_customer_send_finish: outcome must be sent, not_sent or unknown, not %',
                        quote_literal(left(coalesce(fn_customer_send_finish.outcome, 'NULL'), 32))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'sent: 250 after DATA; not_sent: failed before DATA; unknown: failed after DATA started.';
    END IF;
    SELECT s.id, s.message_id, s.state, s.draft_sha256 INTO v_send
      FROM customer_message_send AS s WHERE s.id = fn_customer_send_finish.send_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'send_id', fn_customer_send_finish.send_id);
    END IF;
    PERFORM fn_customer__lock(v_send.message_id);
    SELECT s.state INTO v_send.state FROM customer_message_send AS s WHERE s.id = v_send.id FOR UPDATE;
    IF v_send.state <> 'sending' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_sending', 'send_id', v_send.id, 'state', v_send.state);
    END IF;
    v_state := CASE fn_customer_send_finish.outcome WHEN 'sent' THEN 'sent' WHEN 'not_sent' THEN 'not_sent'
                                                    ELSE 'reconcile' END;
    UPDATE customer_message_send AS s
       SET state = v_state, finished_at = now(), detail = left(fn_customer_send_finish.detail, 500)
     WHERE s.id = v_send.id;
    UPDATE customer_message AS cm
       SET state = CASE v_state WHEN 'sent' THEN 'sent' WHEN 'not_sent' THEN 'approved' ELSE 'reconcile' END,
           updated_at = now()
     WHERE cm.id = v_send.message_id;
    IF v_state = 'sent' THEN
        PERFORM fn_outbox_emit('customer.message_sent',
                               jsonb_build_object('message_id', v_send.message_id, 'send_id', v_send.id,
                                                  'draft_sha256', v_send.draft_sha256), 'phase7');
    ELSIF v_state = 'reconcile' THEN
        PERFORM fn_outbox_emit('customer.message_reconcile',
                               jsonb_build_object('message_id', v_send.message_id, 'send_id', v_send.id,
                                                  'cause', 'outcome_unknown'), 'phase7');
    END IF;
    RETURN jsonb_build_object('ok', true, 'send_id', v_send.id, 'message_id', v_send.message_id, 'state', v_state);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_send_finish(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_send_finish(bigint, text, text) TO conveyor_worker, conveyor_pii, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_customer_send_finish(bigint, text, text) IS
    'The outcome of a begun send: sent | not_sent (before DATA: the message is approved again, the job may retry) | unknown (after DATA started: reconcile). → {"ok":true,"send_id","message_id","state"}; a send not sending → {"refused":true,"reason":"not_sending","state"}; unknown send → not_found. Refuses customer_channel_disabled while customer.channel.enabled is false. Example: SELECT conveyor.fn_customer_send_finish(7, ''sent'', detail => ''250 2.0.0 queued'');';
