-- Phase 7 down: undo ddl.up.sql in reverse order. The message tables hold customers' mail:
-- dropping them REFUSES unless they are empty or were archived by the runner
-- (`conveyor phase rollback 7 --archive FILE`). Not undone: the role conveyor_pii is
-- cluster-wide (another database may use it) and stays, like phase 0's roles; its USAGE on the
-- schema is revoked.

DO $$
BEGIN
    PERFORM conveyor_meta.fn_assert_empty_for_drop(ARRAY[
        'conveyor.customer_message_send',
        'conveyor.customer_message_body',
        'conveyor.customer_message',
        'conveyor.customer_mailbox'
    ]::regclass[]);
END
$$;

DROP VIEW conveyor.v_customer_message_health;
DROP VIEW conveyor.v_customer_message;

DROP TRIGGER job_queue_customer_approve_released_trg ON conveyor.job_queue;

DROP FUNCTION conveyor.fn_customer_message_reconcile(bigint, text, text, text);
DROP FUNCTION conveyor.fn_customer_send_finish(bigint, text, text);
DROP FUNCTION conveyor.fn_customer_send_begin(bigint, bigint);
DROP FUNCTION conveyor.fn_customer_message_body(bigint);
DROP FUNCTION conveyor.fn_customer_message_reject(bigint, text, text);
DROP FUNCTION conveyor.fn_customer_message_revoke(bigint, text);
DROP FUNCTION conveyor.fn_customer_message_approve(bigint, text, text);
DROP FUNCTION conveyor.fn_customer_message_edit(bigint, text, text, text);
DROP FUNCTION conveyor.fn_customer_message_draft(bigint, text, text, text);
DROP FUNCTION conveyor.fn_customer_message_classify(bigint, text, text);
DROP FUNCTION conveyor.fn_customer_mailbox_advance(text, text, bigint, bigint);
DROP FUNCTION conveyor.fn_customer_mailbox_cursor(text, text);
DROP FUNCTION conveyor.fn_customer_message_ingest(text, text, bigint, bigint, text, timestamptz, text, text,
    text[], text[], text, text, text, text, text, integer, text[]);
DROP FUNCTION conveyor.fn_customer__approve_step_released();
DROP FUNCTION conveyor.fn_customer__store_draft(bigint, text, text, text);
DROP FUNCTION conveyor.fn_customer__release_send(bigint, text);
DROP FUNCTION conveyor.fn_customer__lock(bigint);
DROP FUNCTION conveyor.fn_customer__actor(text, text, text);
DROP FUNCTION conveyor.fn_customer__sha256(text);

DROP TABLE conveyor.customer_message_send;
DROP TABLE conveyor.customer_message_body;
DROP TABLE conveyor.customer_message;
DROP TABLE conveyor.customer_mailbox;

REVOKE USAGE ON SCHEMA conveyor FROM conveyor_pii;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
