-- Phase 4 — trigger-in / trigger-out generalisation (ROADMAP §6): the 9-domain route CHECK, the
-- consumer registry with fn_consumer_dispatch (outbox events → jobs or function calls), and job
-- subscriptions (which executor may claim which job kinds), enforced by fn_job_claim's new
-- optional executor argument. Needs phase 3 (and so phases 1 and 0). event_outbox and
-- iu_core.iu_staging_* are not touched. Dispatch refuses while queue.dispatch.enabled is false
-- (data.up.sql inserts it false); data.up.sql also turns the legacy auto-instantiate path off and
-- registers fn_iu_auto_instantiate_from_event as the consumer legacy.auto_instantiate.

-- ---------------------------------------------------------------------------------------------
-- iu_sql_event_route: the target domain CHECK widened to the 9 domains (same constraint name,
-- so ddl.down.sql can narrow it back by name).
-- ---------------------------------------------------------------------------------------------
ALTER TABLE conveyor.iu_sql_event_route
    DROP CONSTRAINT iu_sql_event_route_target_event_domain_check;
ALTER TABLE conveyor.iu_sql_event_route
    ADD CONSTRAINT iu_sql_event_route_target_event_domain_check
    CHECK (target_event_domain IN ('iu', 'staging', 'system', 'queue', 'job', 'workflow',
                                   'customer', 'channel', 'governance'));
COMMENT ON COLUMN conveyor.iu_sql_event_route.target_event_domain IS
    'Domain of target_event_type; CHECK iu_sql_event_route_target_event_domain_check allows iu, staging, system, queue, job, workflow, customer, channel, governance (widened by phase 4)';

-- ---------------------------------------------------------------------------------------------
-- executor_kind: the vocabulary of executors (rows in data.up.sql). A name not in it can neither
-- subscribe nor claim as an executor, so an executor such as mot is rejected by leaving it out.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.executor_kind (
    executor    text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT executor_kind_pkey PRIMARY KEY (executor),
    CONSTRAINT executor_kind_executor_check CHECK (executor ~ '^[a-z][a-z0-9_]{0,62}$')
);
COMMENT ON TABLE conveyor.executor_kind IS
    'Executors that may run jobs (agent, codex, dot, external_worker, operator): the vocabulary of job_subscription.executor and fn_job_claim''s executor';

-- ---------------------------------------------------------------------------------------------
-- job_subscription: which executor may claim which job kinds.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.job_subscription (
    executor     text        NOT NULL,
    kind_pattern text        NOT NULL,
    kind_prefix  text        GENERATED ALWAYS AS
                             (CASE WHEN right(kind_pattern, 2) = '.*' THEN left(kind_pattern, -1) END) STORED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL DEFAULT current_user,
    CONSTRAINT job_subscription_pkey PRIMARY KEY (executor, kind_pattern),
    CONSTRAINT job_subscription_executor_fkey
        FOREIGN KEY (executor) REFERENCES conveyor.executor_kind (executor),
    CONSTRAINT job_subscription_kind_pattern_check
        CHECK (octet_length(kind_pattern) <= 130
               AND kind_pattern ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]*(\.\*)?$')
);
COMMENT ON TABLE conveyor.job_subscription IS
    'Which executor may claim which job kinds: fn_job_claim(executor => …) claims only kinds the executor is subscribed to (without an executor, claims are unrestricted). Write with fn_job_subscribe / fn_job_unsubscribe';
COMMENT ON COLUMN conveyor.job_subscription.kind_pattern IS
    'A job kind (exact match) or <prefix>.* (every kind starting with <prefix>.)';
COMMENT ON COLUMN conveyor.job_subscription.kind_prefix IS
    'For a <prefix>.* pattern: <prefix>. (what a kind must start with); NULL for an exact kind';

-- ---------------------------------------------------------------------------------------------
-- consumer_registry: what dispatch does with each event.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.consumer_registry (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    consumer        text        NOT NULL,
    event_pattern   text        NOT NULL,
    pattern_prefix  text        GENERATED ALWAYS AS
                                (CASE WHEN right(event_pattern, 1) = '*' THEN left(event_pattern, -1) END) STORED,
    action          text        NOT NULL,
    job_kind        text,
    job_queue       text,
    job_executor    text,
    job_priority    integer,
    payload_mapping jsonb,
    target          regprocedure,
    enabled         boolean     NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text        NOT NULL DEFAULT current_user,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consumer_registry_pkey PRIMARY KEY (id),
    CONSTRAINT consumer_registry_consumer_event_pattern_key UNIQUE (consumer, event_pattern),
    CONSTRAINT consumer_registry_consumer_check
        CHECK (consumer ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
    CONSTRAINT consumer_registry_event_pattern_check
        CHECK (char_length(event_pattern) <= 200
               AND (event_pattern ~ '^[a-z][a-z0-9_]*([./][a-z0-9_]+)+$'
                    OR event_pattern ~ '^[a-z][a-z0-9_]*([./][a-z0-9_]+)*[./]\*$')),
    CONSTRAINT consumer_registry_action_check
        CHECK (action IN ('enqueue_job', 'call_function')),
    CONSTRAINT consumer_registry_enqueue_check
        CHECK (action <> 'enqueue_job' OR (job_kind IS NOT NULL AND target IS NULL)),
    CONSTRAINT consumer_registry_call_check
        CHECK (action <> 'call_function'
               OR (target IS NOT NULL AND job_kind IS NULL AND job_queue IS NULL
                   AND job_executor IS NULL AND job_priority IS NULL AND payload_mapping IS NULL)),
    CONSTRAINT consumer_registry_job_executor_fkey
        FOREIGN KEY (job_executor) REFERENCES conveyor.executor_kind (executor)
);
CREATE INDEX consumer_registry_enabled_idx ON conveyor.consumer_registry (event_pattern)
    WHERE enabled;
COMMENT ON INDEX conveyor.consumer_registry_enabled_idx IS 'Enabled consumers by pattern (dispatch matching).';
COMMENT ON TABLE conveyor.consumer_registry IS
    'Outbox consumers that fn_consumer_dispatch applies to every matching event: enqueue a job or call a function. Write with fn_consumer_register / fn_consumer_disable (a trigger validates every row)';
COMMENT ON COLUMN conveyor.consumer_registry.consumer IS
    'Consumer name (1..128 of A-Z a-z 0-9 _ . -); jobs it enqueues carry the idempotency key <consumer>:<event_id>';
COMMENT ON COLUMN conveyor.consumer_registry.event_pattern IS
    'An exact event_type (staging.record_approved) or a prefix pattern ending in .* or /* (staging.*, system/*, iu.template.*)';
COMMENT ON COLUMN conveyor.consumer_registry.pattern_prefix IS
    'For a prefix pattern: the part before the final *, which a matching event_type starts with; NULL for an exact type';
COMMENT ON COLUMN conveyor.consumer_registry.action IS
    'enqueue_job: enqueue one job of job_kind per event; call_function: call target(event_id) once per event';
COMMENT ON COLUMN conveyor.consumer_registry.job_queue IS 'enqueue_job: the queue (NULL = default)';
COMMENT ON COLUMN conveyor.consumer_registry.job_executor IS
    'enqueue_job: the executor expected to run the jobs (an executor_kind; documentation for operators: what a claim may take is decided by job_subscription)';
COMMENT ON COLUMN conveyor.consumer_registry.job_priority IS 'enqueue_job: the job priority (NULL = 0)';
COMMENT ON COLUMN conveyor.consumer_registry.payload_mapping IS
    'enqueue_job: NULL = the job payload is the event payload as is; else a JSON object {"job_field": "source"} where source is a top-level key of the event payload (missing: JSON null) or $event_id / $event_type';
COMMENT ON COLUMN conveyor.consumer_registry.target IS
    'call_function: a function conveyor.* or iu_core.* taking (event_id bigint) and returning jsonb; an answer with "refused": true counts as a failure';
COMMENT ON COLUMN conveyor.consumer_registry.enabled IS 'false: dispatch ignores the row (fn_consumer_disable; fn_consumer_register enables again)';

-- ---------------------------------------------------------------------------------------------
-- What dispatch did: one delivery per (consumer, event), the unmatched events, the failures.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.consumer_delivery (
    consumer     text        NOT NULL,
    event_id     bigint      NOT NULL,
    registry_id  bigint      NOT NULL,
    outcome      text        NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consumer_delivery_pkey PRIMARY KEY (consumer, event_id),
    CONSTRAINT consumer_delivery_outcome_check CHECK (outcome IN ('enqueued', 'called', 'failed'))
);
COMMENT ON TABLE conveyor.consumer_delivery IS
    'One row per (consumer, event) fn_consumer_dispatch handled, written in the transaction that handled it: a pair found here is never handled again (so a job is never enqueued twice, even after it finished). History: no foreign keys, so outbox retention can prune';
COMMENT ON COLUMN conveyor.consumer_delivery.outcome IS
    'enqueued (job <consumer>:<event_id>), called (target answered), failed (see consumer_dead_letter)';

CREATE TABLE conveyor.consumer_unmatched (
    event_id    bigint      NOT NULL,
    event_type  text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consumer_unmatched_pkey PRIMARY KEY (event_id)
);
COMMENT ON TABLE conveyor.consumer_unmatched IS
    'Events fn_consumer_dispatch read that no enabled consumer matched (recorded, not dropped silently)';

CREATE TABLE conveyor.consumer_dead_letter (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    event_id    bigint      NOT NULL,
    consumer    text        NOT NULL,
    registry_id bigint      NOT NULL,
    error       text        NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consumer_dead_letter_pkey PRIMARY KEY (id),
    CONSTRAINT consumer_dead_letter_consumer_event_id_key UNIQUE (consumer, event_id),
    CONSTRAINT consumer_dead_letter_error_check CHECK (char_length(error) <= 2000)
);
COMMENT ON TABLE conveyor.consumer_dead_letter IS
    'A (consumer, event) dispatch could not apply: the call raised or refused, or the job was invalid (no payload copy; the event stays in the outbox)';
COMMENT ON COLUMN conveyor.consumer_dead_letter.error IS
    'SQLSTATE and message of the error, or the refusal, truncated to 2,000 characters';

GRANT ALL ON TABLE conveyor.executor_kind, conveyor.job_subscription, conveyor.consumer_registry,
    conveyor.consumer_delivery, conveyor.consumer_unmatched, conveyor.consumer_dead_letter
    TO conveyor_admin;

-- ---------------------------------------------------------------------------------------------
-- Functions. fn_job_claim gains the optional executor argument: a new signature, so the phase-1
-- function is dropped and the new one created (ddl.down.sql restores the .1 file).
-- ---------------------------------------------------------------------------------------------
\ir ../../functions/fn_consumer__problem.4.sql
\ir ../../functions/fn_consumer__validate.4.sql
\ir ../../functions/fn_consumer_register.4.sql
\ir ../../functions/fn_consumer_disable.4.sql
\ir ../../functions/fn_consumer_dispatch.4.sql
\ir ../../functions/fn_job_subscribe.4.sql
\ir ../../functions/fn_job_unsubscribe.4.sql

DROP FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer);
\ir ../../functions/fn_job_claim.4.sql
\ir ../../functions/fn_outbox_emit.4.sql

CREATE TRIGGER consumer_registry_validate_trg
    BEFORE INSERT OR UPDATE ON conveyor.consumer_registry
    FOR EACH ROW
    EXECUTE FUNCTION conveyor.fn_consumer__validate();
COMMENT ON TRIGGER consumer_registry_validate_trg ON conveyor.consumer_registry IS
    'Phase 4: every registry row is validated (fn_consumer__problem), also rows written directly';

-- ---------------------------------------------------------------------------------------------
-- Views (no payloads).
-- ---------------------------------------------------------------------------------------------
CREATE VIEW conveyor.v_consumer_registry AS
SELECT cr.id,
       cr.consumer,
       cr.event_pattern,
       cr.action,
       cr.job_kind,
       cr.job_queue,
       cr.job_executor,
       cr.job_priority,
       cr.payload_mapping,
       cr.target::text AS target,
       cr.enabled,
       cr.created_at,
       cr.created_by,
       cr.updated_at
  FROM conveyor.consumer_registry AS cr;
COMMENT ON VIEW conveyor.v_consumer_registry IS 'Registered outbox consumers and what each does';

CREATE VIEW conveyor.v_consumer_unmatched AS
SELECT cu.event_id,
       cu.event_type,
       eo.created_at AS emitted_at,
       cu.recorded_at
  FROM conveyor.consumer_unmatched AS cu
  LEFT JOIN conveyor.event_outbox AS eo ON eo.id = cu.event_id;
COMMENT ON VIEW conveyor.v_consumer_unmatched IS
    'Events dispatch read that no enabled consumer matched (no payload)';

CREATE VIEW conveyor.v_consumer_dead_letter AS
SELECT dl.id,
       dl.event_id,
       eo.event_type,
       dl.consumer,
       dl.registry_id,
       dl.error,
       dl.failed_at
  FROM conveyor.consumer_dead_letter AS dl
  LEFT JOIN conveyor.event_outbox AS eo ON eo.id = dl.event_id;
COMMENT ON VIEW conveyor.v_consumer_dead_letter IS
    'Consumer dead letters: (consumer, event) pairs dispatch could not apply, with the error (no payload)';

CREATE VIEW conveyor.v_job_subscription AS
SELECT js.executor,
       js.kind_pattern,
       js.created_at,
       js.created_by
  FROM conveyor.job_subscription AS js;
COMMENT ON VIEW conveyor.v_job_subscription IS 'Which executor may claim which job kinds';

GRANT SELECT ON conveyor.v_consumer_registry, conveyor.v_consumer_unmatched,
    conveyor.v_consumer_dead_letter, conveyor.v_job_subscription
    TO conveyor_reader, conveyor_admin;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
