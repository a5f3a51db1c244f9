-- fn_customer_mailbox_cursor: where the channel adapter stands in one mailbox. A mailbox never
-- polled answers {"uidvalidity": null, "last_uid": 0}.
CREATE OR REPLACE FUNCTION conveyor.fn_customer_mailbox_cursor(account text, mailbox text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_row record;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    IF fn_customer_mailbox_cursor.account IS NULL OR fn_customer_mailbox_cursor.mailbox IS NULL THEN
        RAISE EXCEPTION 'fn_customer_mailbox_cursor: account and mailbox are required'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass e.g. (''support'', ''INBOX'').';
    END IF;
    SELECT mb.uidvalidity, mb.last_uid, mb.polled_at INTO v_row
      FROM customer_mailbox AS mb
     WHERE mb.account = fn_customer_mailbox_cursor.account AND mb.mailbox = fn_customer_mailbox_cursor.mailbox;
    RETURN jsonb_build_object('uidvalidity', v_row.uidvalidity, 'last_uid', coalesce(v_row.last_uid, 0),
                              'polled_at', v_row.polled_at);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_mailbox_cursor(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_mailbox_cursor(text, text) TO conveyor_worker, conveyor_pii, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_customer_mailbox_cursor(text, text) IS
    'The IMAP cursor of (account, mailbox): → {"uidvalidity": N|null, "last_uid": N, "polled_at"}. Refuses customer_channel_disabled while customer.channel.enabled is false. Example: SELECT conveyor.fn_customer_mailbox_cursor(''support'', ''INBOX'');';
