-- fn_customer_mailbox_advance: move the cursor of one mailbox after the messages up to last_uid
-- were ingested (same or an earlier transaction). With the same UIDVALIDITY it only moves
-- forward; a changed UIDVALIDITY resets it to the given values and emits
-- customer.mailbox_uidvalidity_changed (the Message-ID fallback of fn_customer_message_ingest
-- then keeps the re-fetched mails from becoming duplicates).
CREATE OR REPLACE FUNCTION conveyor.fn_customer_mailbox_advance(
    account     text,
    mailbox     text,
    uidvalidity bigint,
    last_uid    bigint
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_old     bigint;
    v_changed boolean := false;
BEGIN
    IF NOT fn_config_enabled('customer.channel.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'customer_channel_disabled',
                                  'flag', 'customer.channel.enabled');
    END IF;
    IF fn_customer_mailbox_advance.account IS NULL OR fn_customer_mailbox_advance.mailbox IS NULL
       OR fn_customer_mailbox_advance.uidvalidity IS NULL OR fn_customer_mailbox_advance.last_uid IS NULL
       OR fn_customer_mailbox_advance.last_uid < 0 THEN
        RAISE EXCEPTION 'fn_customer_mailbox_advance: account, mailbox, uidvalidity and a last_uid >= 0 are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the mailbox''s UIDVALIDITY and the highest UID ingested.';
    END IF;
    SELECT mb.uidvalidity INTO v_old
      FROM customer_mailbox AS mb
     WHERE mb.account = fn_customer_mailbox_advance.account AND mb.mailbox = fn_customer_mailbox_advance.mailbox
       FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO customer_mailbox (account, mailbox, uidvalidity, last_uid, polled_at)
        VALUES (fn_customer_mailbox_advance.account, fn_customer_mailbox_advance.mailbox,
                fn_customer_mailbox_advance.uidvalidity, fn_customer_mailbox_advance.last_uid, now())
        ON CONFLICT (account, mailbox) DO NOTHING;
        IF FOUND THEN
            RETURN jsonb_build_object('ok', true, 'uidvalidity_changed', false);
        END IF;
        SELECT mb.uidvalidity INTO v_old
          FROM customer_mailbox AS mb
         WHERE mb.account = fn_customer_mailbox_advance.account AND mb.mailbox = fn_customer_mailbox_advance.mailbox
           FOR UPDATE;
    END IF;
    v_changed := v_old IS NOT NULL AND v_old <> fn_customer_mailbox_advance.uidvalidity;
    UPDATE customer_mailbox AS mb
       SET uidvalidity = fn_customer_mailbox_advance.uidvalidity,
           last_uid = CASE WHEN v_changed OR v_old IS NULL THEN fn_customer_mailbox_advance.last_uid
                           ELSE greatest(mb.last_uid, fn_customer_mailbox_advance.last_uid) END,
           polled_at = now()
     WHERE mb.account = fn_customer_mailbox_advance.account AND mb.mailbox = fn_customer_mailbox_advance.mailbox;
    IF v_changed THEN
        PERFORM fn_outbox_emit('customer.mailbox_uidvalidity_changed',
                               jsonb_build_object('account', fn_customer_mailbox_advance.account,
                                                  'mailbox', fn_customer_mailbox_advance.mailbox,
                                                  'old_uidvalidity', v_old,
                                                  'uidvalidity', fn_customer_mailbox_advance.uidvalidity),
                               'phase7');
    END IF;
    RETURN jsonb_build_object('ok', true, 'uidvalidity_changed', v_changed);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer_mailbox_advance(text, text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_customer_mailbox_advance(text, text, bigint, bigint) TO conveyor_worker, conveyor_pii, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_customer_mailbox_advance(text, text, bigint, bigint) IS
    'Move the IMAP cursor of (account, mailbox) after ingesting up to last_uid (forward only; a changed UIDVALIDITY resets it and emits customer.mailbox_uidvalidity_changed). → {"ok":true,"uidvalidity_changed":bool}. Refuses customer_channel_disabled while customer.channel.enabled is false. Example: SELECT conveyor.fn_customer_mailbox_advance(''support'', ''INBOX'', uidvalidity => 1700000000, last_uid => 42);';
