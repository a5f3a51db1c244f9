-- Phase 7 — customer messages (ROADMAP §9): mail in, classify, draft, a person's approval bound
-- to the draft's content hash, mail out, PII kept apart. Needs phase 6 (a message's journey is a
-- workflow of the template customer.message_flow) and so phases 4, 3, 1 and 0.
--
-- The PII boundary: customer_message holds ids, states, the classification and content hashes
-- only; every subject, address and body lives in customer_message_body, which only the NOLOGIN
-- role conveyor_pii (and conveyor_admin, the owner of the functions) may read. Job payloads are
-- {"message_id": N}, events carry ids/states/hashes, the views show no content, and errors name
-- ids, never content.
--
-- Send exactly once: fn_customer_send_begin writes the customer_message_send row in state
-- sending and the caller commits it before SMTP DATA; a second begin while it is still sending
-- (a crash after DATA) moves it to reconcile for a person (fn_customer_message_reconcile) and
-- never resends. At most one send row per message is sending or sent (a partial unique index).
--
-- Approval and the send job (customer_message.send_job_id): the workflow's send step is the
-- first job meant to send. When send_begin refuses that job for want of a valid approval
-- (not_approved / approval_void: an edit or revoke after the send step was released), the
-- handler completes the job with that outcome (no dead letter) and begin clears send_job_id: the
-- job has spent its turn. A later approval (fn_customer__release_send) then enqueues a fresh,
-- plain customer_message_send job (queue customer) and records it in send_job_id; while
-- send_job_id names a live job nothing is enqueued, so there is never a second live send job.
-- Both begin and approve lock the message row, so the two cannot cross.

-- conveyor_pii: cluster-wide like phase 0's roles; created if missing, never dropped.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'conveyor_pii') THEN
        CREATE ROLE conveyor_pii NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- created concurrently by another database's migration
END;
$$;
GRANT USAGE ON SCHEMA conveyor TO conveyor_pii;

-- ---------------------------------------------------------------------------------------------
-- customer_mailbox: the IMAP cursor of one (account, mailbox).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.customer_mailbox (
    account     text        NOT NULL,
    mailbox     text        NOT NULL,
    uidvalidity bigint,
    last_uid    bigint      NOT NULL DEFAULT 0,
    polled_at   timestamptz,
    CONSTRAINT customer_mailbox_pkey PRIMARY KEY (account, mailbox),
    CONSTRAINT customer_mailbox_last_uid_check CHECK (last_uid >= 0)
);
COMMENT ON TABLE conveyor.customer_mailbox IS
    'Phase 7: where the channel adapter stands in each mailbox (UIDVALIDITY and the last ingested UID). Write with fn_customer_mailbox_advance';

-- ---------------------------------------------------------------------------------------------
-- customer_message: one inbound mail, no PII.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.customer_message (
    id                 bigint      GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME conveyor.customer_message_id_seq)
                                   CONSTRAINT customer_message_pkey PRIMARY KEY,
    account            text        NOT NULL,
    mailbox            text        NOT NULL,
    uidvalidity        bigint      NOT NULL,
    uid                bigint      NOT NULL,
    message_id_sha256  text,
    state              text        NOT NULL DEFAULT 'received'
                                   CONSTRAINT customer_message_state_check
                                   CHECK (state IN ('received', 'classified', 'drafted', 'awaiting_approval',
                                                    'approved', 'sending', 'sent', 'rejected', 'reconcile',
                                                    'failed')),
    classification     text        CONSTRAINT customer_message_classification_check
                                   CHECK (classification ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    body_sha256        text        NOT NULL,
    draft_sha256       text,
    approved_sha256    text,
    approved_by        text,
    approved_at        timestamptz,
    approval_voided_at timestamptz,
    rejected_by        text,
    rejected_at        timestamptz,
    workflow_id        bigint,
    send_job_id        bigint,
    received_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    problems           text[]      NOT NULL DEFAULT '{}',
    raw_size           integer,
    CONSTRAINT customer_message_uid_key UNIQUE (account, mailbox, uidvalidity, uid),
    CONSTRAINT customer_message_approval_check
        CHECK (approved_sha256 IS NULL OR (approved_sha256 = draft_sha256 AND approved_by IS NOT NULL
                                           AND approved_at IS NOT NULL))
);
CREATE UNIQUE INDEX customer_message_message_id_idx ON conveyor.customer_message (account, message_id_sha256)
    WHERE message_id_sha256 IS NOT NULL;
COMMENT ON INDEX conveyor.customer_message_message_id_idx IS
    'Phase 7: one message per (account, Message-ID hash): the fallback when UIDVALIDITY changed';
CREATE INDEX customer_message_state_idx ON conveyor.customer_message (state, updated_at);
COMMENT ON INDEX conveyor.customer_message_state_idx IS 'Messages by state (list, health).';
COMMENT ON TABLE conveyor.customer_message IS
    'Phase 7: one inbound customer mail, without PII (ids, state, classification, content hashes). received → classified → awaiting_approval → approved → sending → sent; side states rejected, reconcile (a person decides), failed. The content is in customer_message_body';
COMMENT ON COLUMN conveyor.customer_message.message_id_sha256 IS 'sha256 (hex) of the trimmed Message-ID header (the raw header may carry an address)';
COMMENT ON COLUMN conveyor.customer_message.state IS
    'drafted is never left standing: a draft goes to awaiting_approval, or to approved when customer.approve_required is false';
COMMENT ON COLUMN conveyor.customer_message.draft_sha256 IS 'sha256 (hex) of the current draft (to, subject, text); an approval binds to it';
COMMENT ON COLUMN conveyor.customer_message.approved_sha256 IS 'The draft hash the approval is for (always the current draft''s: an edit or revoke clears it)';
COMMENT ON COLUMN conveyor.customer_message.approval_voided_at IS 'When an approval was last voided (edit, revoke): send_begin then answers approval_void';
COMMENT ON COLUMN conveyor.customer_message.send_job_id IS
    'The job meant to send the current approval; NULL once send_begin refused it for want of approval (a later approval enqueues a fresh one)';

-- ---------------------------------------------------------------------------------------------
-- customer_message_body: the PII.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.customer_message_body (
    message_id        bigint      NOT NULL
                                  CONSTRAINT customer_message_body_pkey PRIMARY KEY
                                  CONSTRAINT customer_message_body_message_fkey
                                  REFERENCES conveyor.customer_message (id),
    message_id_header text,
    subject           text,
    from_address      text,
    to_addresses      text[]      NOT NULL DEFAULT '{}',
    cc_addresses      text[]      NOT NULL DEFAULT '{}',
    reply_to          text,
    in_reply_to       text,
    references_header text,
    text_body         text,
    html_body         text,
    draft_subject     text,
    draft_to          text[],
    draft_text        text,
    drafted_by        text,
    drafted_at        timestamptz,
    reject_reason     text
);
COMMENT ON TABLE conveyor.customer_message_body IS
    'Phase 7, PII: the subject, addresses and bodies of a customer message and its draft reply. SELECT only for conveyor_pii; nothing copies it elsewhere';

-- ---------------------------------------------------------------------------------------------
-- customer_message_send: one SMTP attempt of one approved draft.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.customer_message_send (
    id                bigint      GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME conveyor.customer_message_send_id_seq)
                                  CONSTRAINT customer_message_send_pkey PRIMARY KEY,
    message_id        bigint      NOT NULL
                                  CONSTRAINT customer_message_send_message_fkey
                                  REFERENCES conveyor.customer_message (id),
    draft_sha256      text        NOT NULL,
    job_id            bigint,
    state             text        NOT NULL DEFAULT 'sending'
                                  CONSTRAINT customer_message_send_state_check
                                  CHECK (state IN ('sending', 'sent', 'not_sent', 'reconcile')),
    message_id_header text        NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    detail            text        CONSTRAINT customer_message_send_detail_check CHECK (char_length(detail) <= 500),
    reconciled_by     text,
    reconcile_note    text        CONSTRAINT customer_message_send_note_check CHECK (char_length(reconcile_note) <= 1000)
);
CREATE UNIQUE INDEX customer_message_send_once_idx ON conveyor.customer_message_send (message_id)
    WHERE state IN ('sending', 'sent');
COMMENT ON INDEX conveyor.customer_message_send_once_idx IS
    'Phase 7: at most one send of a message is sending or sent (never a second SMTP transaction)';
CREATE INDEX customer_message_send_message_idx ON conveyor.customer_message_send (message_id, id);
COMMENT ON INDEX conveyor.customer_message_send_message_idx IS 'The sends of a message, latest last.';
COMMENT ON TABLE conveyor.customer_message_send IS
    'Phase 7: each SMTP attempt: sending (committed before DATA) → sent | not_sent (failed before DATA) | reconcile (outcome unknown: a person decides). detail is the SMTP reply code/text only';

GRANT ALL ON TABLE conveyor.customer_mailbox, conveyor.customer_message, conveyor.customer_message_body,
    conveyor.customer_message_send TO conveyor_admin;
GRANT USAGE ON SEQUENCE conveyor.customer_message_id_seq, conveyor.customer_message_send_id_seq TO conveyor_admin;
GRANT SELECT ON TABLE conveyor.customer_message_body TO conveyor_pii;

-- ---------------------------------------------------------------------------------------------
-- Functions: private helpers first, then the public API.
-- ---------------------------------------------------------------------------------------------
\ir ../../functions/fn_customer__sha256.7.sql
\ir ../../functions/fn_customer__lock.7.sql
\ir ../../functions/fn_customer__actor.7.sql
\ir ../../functions/fn_customer__release_send.7.sql
\ir ../../functions/fn_customer__store_draft.7.sql
\ir ../../functions/fn_customer__approve_step_released.7.sql
\ir ../../functions/fn_customer_message_ingest.7.sql
\ir ../../functions/fn_customer_mailbox_cursor.7.sql
\ir ../../functions/fn_customer_mailbox_advance.7.sql
\ir ../../functions/fn_customer_message_classify.7.sql
\ir ../../functions/fn_customer_message_draft.7.sql
\ir ../../functions/fn_customer_message_edit.7.sql
\ir ../../functions/fn_customer_message_approve.7.sql
\ir ../../functions/fn_customer_message_revoke.7.sql
\ir ../../functions/fn_customer_message_reject.7.sql
\ir ../../functions/fn_customer_message_body.7.sql
\ir ../../functions/fn_customer_send_begin.7.sql
\ir ../../functions/fn_customer_send_finish.7.sql
\ir ../../functions/fn_customer_message_reconcile.7.sql

-- The approve step of a message's workflow is released (its draft step ended) after the message
-- was already approved (customer.approve_required false: fn_customer_message_draft approved it
-- inside the draft job's transaction, while the step still waited): complete it at commit, so
-- send is released. Deferred, so it runs after phase 6's release bookkeeping, never inside it.
-- Plain jobs: the WHEN clause is false and nothing is queued.
CREATE CONSTRAINT TRIGGER job_queue_customer_approve_released_trg
    AFTER UPDATE OF status ON conveyor.job_queue
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.kind = 'customer_message_approve' AND NEW.status = 'queued' AND OLD.status = 'waiting'
          AND NEW.workflow_id IS NOT NULL)
    EXECUTE FUNCTION conveyor.fn_customer__approve_step_released();
COMMENT ON TRIGGER job_queue_customer_approve_released_trg ON conveyor.job_queue IS
    'Phase 7: a released approve step of a message that already holds a valid approval is completed at commit (auto-approval)';

-- ---------------------------------------------------------------------------------------------
-- Views (no PII).
-- ---------------------------------------------------------------------------------------------
CREATE VIEW conveyor.v_customer_message AS
SELECT cm.id,
       cm.account,
       cm.mailbox,
       cm.state,
       cm.classification,
       cm.problems,
       cm.raw_size,
       cm.body_sha256,
       cm.draft_sha256,
       cm.approved_sha256,
       cm.approved_by,
       cm.approved_at,
       cm.approval_voided_at,
       cm.rejected_by,
       cm.rejected_at,
       cm.workflow_id,
       cm.send_job_id,
       ls.id AS send_id,
       ls.state AS send_state,
       ls.detail AS send_detail,
       cm.received_at,
       cm.created_at,
       cm.updated_at
  FROM conveyor.customer_message AS cm
  LEFT JOIN LATERAL (SELECT s.id, s.state, s.detail
                       FROM conveyor.customer_message_send AS s
                      WHERE s.message_id = cm.id
                      ORDER BY s.id DESC
                      LIMIT 1) AS ls ON true;
COMMENT ON VIEW conveyor.v_customer_message IS
    'Phase 7: every customer message without PII (state, classification, hashes, approval, latest send)';

CREATE VIEW conveyor.v_customer_message_health AS
SELECT st.state,
       count(cm.id) AS messages,
       min(cm.updated_at) AS oldest_updated_at,
       now() - min(cm.updated_at) AS oldest_age
  FROM unnest(ARRAY['received', 'classified', 'drafted', 'awaiting_approval', 'approved', 'sending',
                    'sent', 'rejected', 'reconcile', 'failed']) AS st(state)
  LEFT JOIN conveyor.customer_message AS cm ON cm.state = st.state
 GROUP BY st.state;
COMMENT ON VIEW conveyor.v_customer_message_health IS
    'Phase 7: messages per state (every state, zero included) and the oldest one''s age: awaiting_approval waits for a person, reconcile needs a person''s decision';

GRANT SELECT ON conveyor.v_customer_message, conveyor.v_customer_message_health TO conveyor_reader, conveyor_admin;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
