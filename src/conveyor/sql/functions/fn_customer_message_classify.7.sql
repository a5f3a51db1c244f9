-- fn_customer_message_classify: record the classification of a received message (the classify
-- step's handler calls it in its job's transaction). A message already past classification
-- answers wrong_state and changes nothing.
CREATE OR REPLACE FUNCTION conveyor.fn_customer_message_classify(
    message_id     bigint,
    classification text,
    actor          text DEFAULT NULL
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
    IF fn_customer_message_classify.classification IS NULL
       OR fn_customer_message_classify.classification !~ '^[a-z0-9][a-z0-9_.-]{0,63}$' THEN
        RAISE EXCEPTION 'fn_customer_message_classify: classification must be 1 to 64 of a-z 0-9 _ . - (got %)',
                        quote_literal(left(coalesce(fn_customer_message_classify.classification, 'NULL'), 64))
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use a label such as billing, support, complaint, spam or other.';
    END IF;
    v_msg := fn_customer__lock(fn_customer_message_classify.message_id);
    IF v_msg.id IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'message_id', fn_customer_message_classify.message_id);
    END IF;
    IF v_msg.state NOT IN ('received', 'classified') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'wrong_state', 'message_id', v_msg.id, 'state', v_msg.state);
    END IF;
    UPDATE customer_message AS cm
       SET classification = fn_customer_message_classify.classification, state = 'classified', updated_at = now()
     WHERE cm.id = v_msg.id;
    PERFORM fn_outbox_emit('customer.message_classified',
                           jsonb_build_object('message_id', v_msg.id,
                                              'classification', fn_customer_message_classify.classification,
                                              'by', coalesce(nullif(fn_customer_message_classify.actor, ''), session_user::text)),
                           'phase7');
    RETURN jsonb_build_object('ok', true, 'message_id', v_msg.id, 'state', 'classified',
                              'classification', fn_customer_message_classify.classification);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_message_classify(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_message_classify(bigint, text, text) TO conveyor_worker, conveyor_pii, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_customer_message_classify(bigint, text, text) IS
    'Record a message''s classification (a label, no content): received|classified → classified. → {"ok":true,"message_id","state","classification"}; past classification → {"refused":true,"reason":"wrong_state","state"}; unknown → not_found. Refuses customer_channel_disabled while customer.channel.enabled is false. Example: SELECT conveyor.fn_customer_message_classify(42, ''billing'', actor => ''rules'');';
