-- Phase 1 — minimal job substrate (ROADMAP §3): the job_queue and job_dead_letter tables, the
-- gated fn_job_* functions and the four read-only views. Purely additive: nothing that exists is
-- changed. Every function refuses while queue.job_substrate.enabled is false (data.up.sql
-- inserts it false), so applying this phase changes no behaviour. Needs phase 0 (schema
-- conveyor, dot_config, fn_config_get, fn_config_enabled, roles conveyor_admin/worker/reader).

-- ---------------------------------------------------------------------------------------------
-- job_queue: one row per live or finished job.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.job_queue (
    id                  bigint      GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME conveyor.job_queue_id_seq)
                                    CONSTRAINT job_queue_pkey PRIMARY KEY,
    queue               text        NOT NULL DEFAULT 'default',
    kind                text        NOT NULL,
    payload             jsonb       NOT NULL,
    priority            smallint    NOT NULL DEFAULT 0,
    status              text        NOT NULL
                                    CONSTRAINT job_queue_status_check
                                    CHECK (status IN ('waiting', 'queued', 'in_progress', 'succeeded', 'cancelled')),
    run_at              timestamptz NOT NULL DEFAULT now(),
    attempts            integer     NOT NULL DEFAULT 0
                                    CONSTRAINT job_queue_attempts_check CHECK (attempts >= 0),
    releases            integer     NOT NULL DEFAULT 0
                                    CONSTRAINT job_queue_releases_check CHECK (releases >= 0),
    max_attempts        integer     CONSTRAINT job_queue_max_attempts_check CHECK (max_attempts >= 1),
    idempotency_key     text,
    lease_token         uuid,
    leased_by           text,
    lease_expires_at    timestamptz,
    cancel_requested_at timestamptz,
    cancel_reason       text,
    last_error          text,
    result              jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    workflow_id         bigint,
    -- A running job always has a lease: the reaper (phase 2) keys on lease_expires_at alone.
    CONSTRAINT job_queue_lease_check
        CHECK (status <> 'in_progress' OR (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL))
)
-- A queue table is small and churns: every job is inserted, updated at claim and at completion,
-- and later pruned. The defaults (vacuum after 20% of the table is dead) let dead versions pile
-- up in the claim index and the heap until claims slow down, so vacuum and analyze run after a
-- fixed number of changes instead of a fraction of the table, and vacuum is not throttled.
-- fillfactor 70 keeps room on each page for the next version of a row: updates that touch no
-- indexed column (cancel requests, last_error) stay HOT; claim/complete change status, which the
-- partial indexes read, so they are not HOT, but their new version still lands on the same page,
-- which page pruning can then reclaim without waiting for vacuum.
WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0.0,
    autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

COMMENT ON TABLE conveyor.job_queue IS
    'Jobs of the conveyor job substrate (phase 1). A job leaves this table only by succeeding, '
    'being cancelled (both stay until retention pruning) or moving to job_dead_letter. Write '
    'only through the fn_job_* functions.';
COMMENT ON COLUMN conveyor.job_queue.queue IS
    'Queue name (≤ 63 bytes, ^[a-z0-9][a-z0-9_.-]*$); workers claim from a list of queues.';
COMMENT ON COLUMN conveyor.job_queue.kind IS
    'Job kind (≤ 128 bytes, ^[A-Za-z0-9][A-Za-z0-9_.:/-]*$): selects the handler and the per-kind '
    'config queue.retry.max_attempts.<kind>.';
COMMENT ON COLUMN conveyor.job_queue.payload IS
    'Handler input, a JSON object (≤ queue.payload.max_bytes, ≤ queue.payload.max_depth deep). May '
    'hold personal data: no view exposes it.';
COMMENT ON COLUMN conveyor.job_queue.priority IS
    'Higher runs first (fn_job_enqueue accepts -1000..1000); ties run by run_at, then id.';
COMMENT ON COLUMN conveyor.job_queue.status IS
    'waiting (workflow step, phase 6) → queued → in_progress → succeeded | cancelled; failures '
    'leave the table for job_dead_letter.';
COMMENT ON COLUMN conveyor.job_queue.run_at IS
    'Earliest time the job may be claimed (scheduled jobs and retry backoff).';
COMMENT ON COLUMN conveyor.job_queue.attempts IS
    'Number of claims. Counted AT CLAIM, so a job that kills its worker still exhausts its '
    'attempts; snooze and release give the attempt back.';
COMMENT ON COLUMN conveyor.job_queue.releases IS
    'Times the job was released unfinished (fn_job_release, a worker draining): not attempts, but '
    'capped by queue.retry.max_releases, past which the job is dead-lettered '
    '(max_releases_exceeded) so a job drained on every run still ends. Snoozes do not count.';
COMMENT ON COLUMN conveyor.job_queue.max_attempts IS
    'Per-job limit; NULL means config queue.retry.max_attempts.<kind>, else .default.';
COMMENT ON COLUMN conveyor.job_queue.idempotency_key IS
    'Optional; unique among live jobs (waiting, queued, in_progress). Released when the job '
    'succeeds, is cancelled or is dead-lettered.';
COMMENT ON COLUMN conveyor.job_queue.lease_token IS
    'Fencing token, new at every claim. complete/fail/extend/snooze/release must present it; kept '
    'after success so a repeated complete is recognised.';
COMMENT ON COLUMN conveyor.job_queue.leased_by IS 'Worker name given to fn_job_claim.';
COMMENT ON COLUMN conveyor.job_queue.lease_expires_at IS
    'While in_progress: when the lease runs out unless extended (the reaper rescues the job after).';
COMMENT ON COLUMN conveyor.job_queue.cancel_requested_at IS
    'Set by fn_job_cancel on a running job; fn_job_extend_lease reports it so the handler stops.';
COMMENT ON COLUMN conveyor.job_queue.cancel_reason IS 'Reason given to fn_job_cancel (≤ 2,000 characters).';
COMMENT ON COLUMN conveyor.job_queue.last_error IS 'Last transient failure (≤ 2,000 characters).';
COMMENT ON COLUMN conveyor.job_queue.result IS 'Result passed to fn_job_complete.';
COMMENT ON COLUMN conveyor.job_queue.started_at IS 'Time of the latest claim.';
COMMENT ON COLUMN conveyor.job_queue.finished_at IS 'When the job succeeded or was cancelled (retention pruning key).';
COMMENT ON COLUMN conveyor.job_queue.workflow_id IS 'Workflow the job is a step of (phase 6); NULL otherwise.';

-- The claim reads this index in order and stops after the batch: queue by equality, then
-- priority DESC, run_at, id exactly as fn_job_claim sorts. Only queued rows are in it.
CREATE INDEX job_queue_claim_idx ON conveyor.job_queue (queue, priority DESC, run_at, id)
    WHERE status = 'queued';
COMMENT ON INDEX conveyor.job_queue_claim_idx IS
    'Claim path of fn_job_claim: ordered scan per queue, queued rows only.';

-- Idempotency keys are unique among live jobs only, so a key is free again once its job has
-- finished. Keyless jobs (most of them) are left out of the index entirely.
CREATE UNIQUE INDEX job_queue_idempotency_key_live_idx ON conveyor.job_queue (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status IN ('waiting', 'queued', 'in_progress');
COMMENT ON INDEX conveyor.job_queue_idempotency_key_live_idx IS
    'One live job per idempotency key; fn_job_enqueue''s ON CONFLICT arbiter.';

CREATE INDEX job_queue_lease_expires_idx ON conveyor.job_queue (lease_expires_at)
    WHERE status = 'in_progress';
COMMENT ON INDEX conveyor.job_queue_lease_expires_idx IS 'Lease reaper: running jobs by lease expiry.';

CREATE INDEX job_queue_finished_idx ON conveyor.job_queue (finished_at)
    WHERE status IN ('succeeded', 'cancelled');
COMMENT ON INDEX conveyor.job_queue_finished_idx IS 'Retention pruning of finished jobs, oldest first.';

-- ---------------------------------------------------------------------------------------------
-- job_dead_letter: jobs that failed for good, with the full job row.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.job_dead_letter (
    id              bigint      GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME conveyor.job_dead_letter_id_seq)
                                CONSTRAINT job_dead_letter_pkey PRIMARY KEY,
    job_id          bigint      NOT NULL,
    queue           text        NOT NULL,
    kind            text        NOT NULL,
    payload         jsonb       NOT NULL,
    job             jsonb       NOT NULL,
    reason          text        NOT NULL
                                CONSTRAINT job_dead_letter_reason_check
                                CHECK (reason IN ('permanent_failure', 'max_attempts_exhausted', 'lease_expired',
                                                  'max_releases_exceeded')),
    error           text        CONSTRAINT job_dead_letter_error_check CHECK (char_length(error) <= 2000),
    attempts        integer     NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    resolved_by     text,
    replayed_job_id bigint
);
COMMENT ON TABLE conveyor.job_dead_letter IS
    'Jobs that failed permanently or exhausted their attempts, moved out of job_queue in the same '
    'transaction. Open while resolved_at is NULL; replay (phase 2) re-enqueues and resolves.';
COMMENT ON COLUMN conveyor.job_dead_letter.job_id IS 'id the job had in job_queue (that row is gone).';
COMMENT ON COLUMN conveyor.job_dead_letter.payload IS 'The job''s payload (may hold personal data: no view exposes it).';
COMMENT ON COLUMN conveyor.job_dead_letter.job IS 'The full job_queue row at failure, as JSON (to_jsonb of the row).';
COMMENT ON COLUMN conveyor.job_dead_letter.reason IS
    'permanent_failure (fn_job_fail_permanent), max_attempts_exhausted (fn_job_fail_transient), '
    'lease_expired (the reaper, phase 2), max_releases_exceeded (fn_job_release past '
    'queue.retry.max_releases).';
COMMENT ON COLUMN conveyor.job_dead_letter.error IS 'Error reported by the worker, truncated to 2,000 characters.';
COMMENT ON COLUMN conveyor.job_dead_letter.attempts IS 'Attempts spent when the job failed.';
COMMENT ON COLUMN conveyor.job_dead_letter.resolved_at IS 'When an operator replayed or dismissed the dead letter.';
COMMENT ON COLUMN conveyor.job_dead_letter.resolved_by IS 'Who resolved it.';
COMMENT ON COLUMN conveyor.job_dead_letter.replayed_job_id IS 'The new job_queue id created by a replay.';

CREATE INDEX job_dead_letter_open_idx ON conveyor.job_dead_letter (failed_at, id)
    WHERE resolved_at IS NULL;
COMMENT ON INDEX conveyor.job_dead_letter_open_idx IS 'Unresolved dead letters, oldest first.';
CREATE INDEX job_dead_letter_job_id_idx ON conveyor.job_dead_letter (job_id);
COMMENT ON INDEX conveyor.job_dead_letter_job_id_idx IS 'Find the dead letter of a job id (cancel, replay).';

-- Defence in depth: the fenced DELETE … RETURNING in fn_job__dead_letter already moves a job at
-- most once, but no future path may leave two open dead letters for one job (a replay would
-- then enqueue it twice).
CREATE UNIQUE INDEX job_dead_letter_one_open_idx ON conveyor.job_dead_letter (job_id)
    WHERE resolved_at IS NULL;
COMMENT ON INDEX conveyor.job_dead_letter_one_open_idx IS 'At most one open dead letter per job.';

-- Admins own and migrate; workers and readers get no table privileges (functions and views only).
GRANT ALL ON TABLE conveyor.job_queue, conveyor.job_dead_letter TO conveyor_admin;
-- fn_job_enqueue_many draws ids from the identity sequence itself (to keep input order), and
-- runs as its owner, conveyor_admin.
GRANT USAGE, SELECT ON SEQUENCE conveyor.job_queue_id_seq TO conveyor_admin;

-- ---------------------------------------------------------------------------------------------
-- Functions: private helpers first, then the public API (each file revokes PUBLIC and grants).
-- ---------------------------------------------------------------------------------------------
\ir ../../functions/fn_job__config_number.1.sql
\ir ../../functions/fn_job__enqueue_problem.1.sql
\ir ../../functions/fn_job__attempt_limit.1.sql
\ir ../../functions/fn_job__max_attempts.1.sql
\ir ../../functions/fn_job__dead_letter.1.sql
\ir ../../functions/fn_job__requeue.1.sql
\ir ../../functions/fn_job__retry_seconds.1.sql
\ir ../../functions/fn_job_enqueue.1.sql
\ir ../../functions/fn_job__enqueue_insert.1.sql
\ir ../../functions/fn_job_enqueue_many.1.sql
\ir ../../functions/fn_job__claim_validate.1.sql
\ir ../../functions/fn_job__claim_rows.1.sql
\ir ../../functions/fn_job_claim.1.sql
\ir ../../functions/fn_job_complete.1.sql
\ir ../../functions/fn_job_complete_many.1.sql
\ir ../../functions/fn_job_fail_transient.1.sql
\ir ../../functions/fn_job_fail_permanent.1.sql
\ir ../../functions/fn_job_extend_lease.1.sql
\ir ../../functions/fn_job_snooze.1.sql
\ir ../../functions/fn_job_release.1.sql
\ir ../../functions/fn_job_cancel.1.sql
\ir ../../functions/fn_job_cancel_ack.1.sql
\ir ../../functions/fn_job_queue_pause.1.sql
\ir ../../functions/fn_job_queue_resume.1.sql

-- ---------------------------------------------------------------------------------------------
-- Views: observability without payloads (payloads may hold personal data).
-- ---------------------------------------------------------------------------------------------
CREATE VIEW conveyor.v_job_queue_backlog AS
SELECT jq.queue,
       jq.kind,
       count(*) FILTER (WHERE jq.run_at <= now())             AS ready_count,
       count(*) FILTER (WHERE jq.run_at > now())              AS scheduled_count,
       now() - min(jq.run_at) FILTER (WHERE jq.run_at <= now()) AS oldest_ready_age,
       max(jq.priority)                                       AS max_priority
  FROM conveyor.job_queue AS jq
 WHERE jq.status = 'queued'
 GROUP BY jq.queue, jq.kind;
COMMENT ON VIEW conveyor.v_job_queue_backlog IS
    'Queued jobs per (queue, kind): ready now, scheduled for later, age of the oldest ready job, '
    'highest priority. No row for a (queue, kind) without queued jobs.';

CREATE VIEW conveyor.v_job_queue_in_progress AS
SELECT jq.id,
       jq.queue,
       jq.kind,
       jq.attempts,
       jq.leased_by,
       jq.started_at,
       jq.lease_expires_at,
       jq.lease_expires_at < clock_timestamp() AS lease_expired,
       jq.cancel_requested_at IS NOT NULL      AS cancel_requested
  FROM conveyor.job_queue AS jq
 WHERE jq.status = 'in_progress';
COMMENT ON VIEW conveyor.v_job_queue_in_progress IS
    'Running jobs, one row each; lease_expired means the reaper may rescue the job.';

CREATE VIEW conveyor.v_job_queue_dead_letter_open AS
SELECT dl.id,
       dl.job_id,
       dl.queue,
       dl.kind,
       dl.reason,
       dl.error,
       dl.attempts,
       dl.failed_at
  FROM conveyor.job_dead_letter AS dl
 WHERE dl.resolved_at IS NULL;
COMMENT ON VIEW conveyor.v_job_queue_dead_letter_open IS 'Unresolved dead letters (no payload).';

CREATE VIEW conveyor.v_dead_letter_all AS
SELECT dl.id,
       dl.job_id,
       dl.queue,
       dl.kind,
       dl.reason,
       dl.error,
       dl.attempts,
       dl.failed_at,
       dl.resolved_at,
       dl.resolved_by,
       dl.replayed_job_id
  FROM conveyor.job_dead_letter AS dl;
COMMENT ON VIEW conveyor.v_dead_letter_all IS 'Every dead letter, resolved or not (no payload).';

GRANT SELECT ON conveyor.v_job_queue_backlog, conveyor.v_job_queue_in_progress,
                conveyor.v_job_queue_dead_letter_open, conveyor.v_dead_letter_all
    TO conveyor_reader, conveyor_admin;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
