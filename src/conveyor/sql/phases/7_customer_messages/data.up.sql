-- Phase 7 data: the flags (channel off, approval required), the body size limit, the event
-- types, the job kinds' subscriptions (the channel adapter runs as external_worker; the approve
-- step is a person's, operator) and the template customer.message_flow v1. Data only; tables
-- and functions are in ddl.up.sql. A key or row that already exists makes this file fail rather
-- than silently keep someone else's value (event types register idempotently; the template
-- stays behind a rollback while workflows reference it, and is then kept as it is).
--
-- customer.message_flow v1: classify → draft → approve (executor operator, queue operator: no
-- worker claims a person's step) → send; classify, draft and send run on queue customer. Emitted
-- by fn_customer_message_ingest with params {"message_id": N}, which is every step's payload.

INSERT INTO conveyor.dot_config (key, value, description) VALUES
    ('customer.channel.enabled', 'false',
     'Customer messages (phase 7): every fn_customer_* function. While false they refuse with '
     'customer_channel_disabled and change nothing (the channel adapter polls and sends nothing).'),
    ('customer.approve_required', 'true',
     'Customer messages (phase 7): no send without a person''s approval bound to the draft''s hash. '
     'false: fn_customer_message_draft approves each draft itself (approver auto), for tests and benchmarks.'),
    ('customer.body.max_bytes', '1048576',
     'Largest text or HTML body fn_customer_message_ingest stores, in bytes; a longer one is stored '
     'truncated with the problem truncated.'),
    ('customer.message_id_domain', '"localhost"',
     'The domain of the Message-ID header of replies (<conveyor.<message>.<send>@domain>).');

SELECT conveyor.fn_event_type_register('customer.message_received',
    'A customer mail was ingested; payload {message_id, account, mailbox, workflow_id, problems}');
SELECT conveyor.fn_event_type_register('customer.message_classified',
    'A customer message was classified; payload {message_id, classification, by}');
SELECT conveyor.fn_event_type_register('customer.message_drafted',
    'A draft reply was stored; payload {message_id, draft_sha256, approval_voided}');
SELECT conveyor.fn_event_type_register('customer.message_approved',
    'A draft was approved (bound to its hash); payload {message_id, draft_sha256, approved_by}');
SELECT conveyor.fn_event_type_register('customer.message_approval_voided',
    'An approval was withdrawn; payload {message_id, draft_sha256, reason, by}');
SELECT conveyor.fn_event_type_register('customer.message_rejected',
    'A message gets no reply; payload {message_id, rejected_by}');
SELECT conveyor.fn_event_type_register('customer.message_sent',
    'A reply was sent (SMTP 250, or reconciled as sent); payload {message_id, send_id, draft_sha256, reconciled_by?}');
SELECT conveyor.fn_event_type_register('customer.message_reconcile',
    'A send''s outcome is unknown: a person must reconcile it; payload {message_id, send_id, cause}');
SELECT conveyor.fn_event_type_register('customer.mailbox_uidvalidity_changed',
    'A mailbox''s UIDVALIDITY changed (its cursor was reset); payload {account, mailbox, old_uidvalidity, uidvalidity}');

INSERT INTO conveyor.job_subscription (executor, kind_pattern, created_by) VALUES
    ('external_worker', 'customer_message_inbound', 'phase 7'),
    ('external_worker', 'customer_message_classify', 'phase 7'),
    ('external_worker', 'customer_message_draft', 'phase 7'),
    ('external_worker', 'customer_message_send', 'phase 7'),
    ('operator', 'customer_message_approve', 'phase 7');

INSERT INTO conveyor.mot_template (name, version, steps, description, created_by) VALUES
    ('customer.message_flow', 1,
     '[{"key": "classify", "kind": "customer_message_classify", "executor": "external_worker", "queue": "customer"},
       {"key": "draft",    "kind": "customer_message_draft",    "executor": "external_worker", "queue": "customer",
        "parents": ["classify"]},
       {"key": "approve",  "kind": "customer_message_approve",  "executor": "operator",        "parents": ["draft"]},
       {"key": "send",     "kind": "customer_message_send",     "executor": "external_worker", "queue": "customer",
        "parents": ["approve"]}]',
     'A customer message''s journey: classify, draft, a person''s approval, send (phase 7)',
     'phase 7')
ON CONFLICT (name, version) DO NOTHING;
