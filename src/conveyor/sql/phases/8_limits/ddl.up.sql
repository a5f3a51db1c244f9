-- Phase 8 — limits (DESIGN.md "Limits"): per-queue caps on jobs in progress and rates, per-key
-- caps and rates (jobs carry an optional concurrency_key), and fairness between keys, all
-- enforced inside fn_job_claim in the statement that leases the rows. The claim's private helper
-- fn_job__claim_rows gets a new version that hands limited queues to fn_job__claim_limited;
-- fn_job_claim's versions (.1, .4) are untouched. Queues without a job_queue_limit row keep the
-- unlimited claim (one primary-key probe more). Depends on phase 4 (the claim's last public
-- version; phase 8 is then always applied after, and rolled back before, every phase that
-- writes a claim version, so no rollback ever restores a claim built on another helper). Claims
-- ignore limits and fn_job_queue_limit / fn_job_key_limit refuse while queue.limits.enabled is
-- false (data.up.sql inserts it false). fn_job_enqueue and fn_job_enqueue_many's private writer
-- fn_job__enqueue_insert get versions that store the key.

ALTER TABLE conveyor.job_queue ADD COLUMN concurrency_key text;
ALTER TABLE conveyor.job_queue ADD CONSTRAINT job_queue_concurrency_key_check
    CHECK (concurrency_key IS NULL OR octet_length(concurrency_key) BETWEEN 1 AND 255);
COMMENT ON COLUMN conveyor.job_queue.concurrency_key IS
    'Key of a limited queue''s per-key caps, rates and fairness (a tenant, an account; phase 8); NULL = none.';

-- Keyed queued rows only, so jobs without a key pay nothing: the loose index scan of a limited
-- claim finds the keys with backlog, then each key's next rows in claim order.
CREATE INDEX job_queue_key_idx ON conveyor.job_queue (queue, concurrency_key, priority DESC, run_at, id)
    WHERE status = 'queued' AND concurrency_key IS NOT NULL;
COMMENT ON INDEX conveyor.job_queue_key_idx IS
    'Limited claims (phase 8): keys with backlog per queue and each key''s rows in claim order.';
-- Keyed jobs in progress only: a claim under per-key caps counts the keys it looks at.
CREATE INDEX job_queue_key_running_idx ON conveyor.job_queue (queue, concurrency_key)
    WHERE status = 'in_progress' AND concurrency_key IS NOT NULL;
COMMENT ON INDEX conveyor.job_queue_key_running_idx IS
    'Limited claims under per-key caps (phase 8): jobs in progress per key.';

CREATE TABLE conveyor.job_queue_limit (
    queue               text        NOT NULL,
    max_in_progress     integer,
    rate                integer,
    per_seconds         numeric,
    key_max_in_progress integer,
    tokens              numeric,
    refilled_at         timestamptz NOT NULL DEFAULT now(),
    cursor_key          text,
    running_bound       integer,
    bound_at            timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    updated_by          text        NOT NULL DEFAULT session_user,
    CONSTRAINT job_queue_limit_pkey PRIMARY KEY (queue),
    CONSTRAINT job_queue_limit_rate_check CHECK ((rate IS NULL) = (per_seconds IS NULL))
);
COMMENT ON TABLE conveyor.job_queue_limit IS
    'Limits of a queue (phase 8; write with fn_job_queue_limit / fn_job_key_limit): a row makes the queue''s claims limited and fair between keys; its lock serializes them';
COMMENT ON COLUMN conveyor.job_queue_limit.max_in_progress IS 'Cap on the queue''s jobs in progress; NULL = none.';
COMMENT ON COLUMN conveyor.job_queue_limit.rate IS 'Claims allowed per per_seconds; NULL = no rate.';
COMMENT ON COLUMN conveyor.job_queue_limit.per_seconds IS 'Period of rate in seconds.';
COMMENT ON COLUMN conveyor.job_queue_limit.key_max_in_progress IS 'Cap of every key without a job_key_limit row; NULL = none.';
COMMENT ON COLUMN conveyor.job_queue_limit.tokens IS 'Token bucket of the rate at refilled_at (fn_job__limit_tokens).';
COMMENT ON COLUMN conveyor.job_queue_limit.refilled_at IS 'When tokens was last computed.';
COMMENT ON COLUMN conveyor.job_queue_limit.cursor_key IS 'Last key served: the next claim starts after it (round robin).';
COMMENT ON COLUMN conveyor.job_queue_limit.running_bound IS 'At least the queue''s jobs in progress: counted at bound_at, plus every job claimed since (fn_job__claim_limited); NULL = count.';
COMMENT ON COLUMN conveyor.job_queue_limit.bound_at IS 'When running_bound was last counted; a claim counts again when queue.limits.enabled changed since.';

CREATE TABLE conveyor.job_key_limit (
    queue           text        NOT NULL,
    concurrency_key text        NOT NULL,
    max_in_progress integer,
    rate            integer,
    per_seconds     numeric,
    tokens          numeric,
    refilled_at     timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text        NOT NULL DEFAULT session_user,
    CONSTRAINT job_key_limit_pkey PRIMARY KEY (queue, concurrency_key),
    CONSTRAINT job_key_limit_queue_fkey
        FOREIGN KEY (queue) REFERENCES conveyor.job_queue_limit (queue),
    CONSTRAINT job_key_limit_rate_check CHECK ((rate IS NULL) = (per_seconds IS NULL))
);
COMMENT ON TABLE conveyor.job_key_limit IS
    'Limits of one concurrency_key of a queue (phase 8; write with fn_job_key_limit)';
COMMENT ON COLUMN conveyor.job_key_limit.max_in_progress IS 'Cap on the key''s jobs in progress; NULL = the queue''s key_max_in_progress.';
COMMENT ON COLUMN conveyor.job_key_limit.rate IS 'Claims of the key allowed per per_seconds; NULL = no rate.';
COMMENT ON COLUMN conveyor.job_key_limit.per_seconds IS 'Period of rate in seconds.';
COMMENT ON COLUMN conveyor.job_key_limit.tokens IS 'Token bucket of the rate at refilled_at.';
COMMENT ON COLUMN conveyor.job_key_limit.refilled_at IS 'When tokens was last computed.';

GRANT ALL ON TABLE conveyor.job_queue_limit, conveyor.job_key_limit TO conveyor_admin;

\ir ../../functions/fn_job__limit_burst.8.sql
\ir ../../functions/fn_job__limit_tokens.8.sql
\ir ../../functions/fn_job__limit_check.8.sql
\ir ../../functions/fn_job__limit_target.8.sql
\ir ../../functions/fn_job__limit_keys.8.sql
\ir ../../functions/fn_job__claim_keys.8.sql
\ir ../../functions/fn_job__claim_limited.8.sql
\ir ../../functions/fn_job__claim_rows.8.sql
\ir ../../functions/fn_job_queue_limit.8.sql
\ir ../../functions/fn_job_key_limit.8.sql
DROP FUNCTION conveyor.fn_job_enqueue(text, jsonb, text, integer, timestamptz, text, integer);
\ir ../../functions/fn_job_enqueue.8.sql
\ir ../../functions/fn_job__enqueue_insert.8.sql

-- v_job_limits: one row per limited queue (concurrency_key NULL) and per key with limits of its
-- own: the caps, the jobs in progress now, the rate, the tokens a claim could take now, and
-- the claims in the last 10 seconds per second (jobs started then and still in job_queue).
CREATE VIEW conveyor.v_job_limits AS
SELECT l.queue,
       NULL::text AS concurrency_key,
       l.max_in_progress,
       l.key_max_in_progress,
       (SELECT count(*) FROM conveyor.job_queue AS jq
         WHERE jq.status = 'in_progress' AND jq.queue = l.queue) AS in_progress,
       l.rate,
       l.per_seconds,
       floor(conveyor.fn_job__limit_tokens(l.tokens, l.refilled_at, l.rate, l.per_seconds,
                                           clock_timestamp())) AS tokens_now,
       (SELECT count(*) FROM conveyor.job_queue AS jq
         WHERE jq.queue = l.queue AND jq.started_at > now() - interval '10 seconds') / 10.0
           AS claims_per_second
  FROM conveyor.job_queue_limit AS l
UNION ALL
SELECT kl.queue,
       kl.concurrency_key,
       kl.max_in_progress,
       NULL,
       (SELECT count(*) FROM conveyor.job_queue AS jq
         WHERE jq.status = 'in_progress' AND jq.queue = kl.queue
           AND jq.concurrency_key = kl.concurrency_key),
       kl.rate,
       kl.per_seconds,
       floor(conveyor.fn_job__limit_tokens(kl.tokens, kl.refilled_at, kl.rate, kl.per_seconds,
                                           clock_timestamp())),
       (SELECT count(*) FROM conveyor.job_queue AS jq
         WHERE jq.queue = kl.queue AND jq.concurrency_key = kl.concurrency_key
           AND jq.started_at > now() - interval '10 seconds') / 10.0
  FROM conveyor.job_key_limit AS kl;
COMMENT ON VIEW conveyor.v_job_limits IS
    'Limits per queue (concurrency_key NULL) and per key (phase 8): caps, jobs in progress, rate, tokens a claim could take now, claims per second over the last 10 s';
GRANT SELECT ON conveyor.v_job_limits TO conveyor_reader, conveyor_worker, conveyor_admin;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
