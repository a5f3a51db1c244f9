-- Phase 2 — retry / lease / DLQ wired (ROADMAP §4): backoff inside fn_job_fail_transient, the
-- lease reaper, dead-letter replay, and retention pruning. Needs phase 1 (job_queue,
-- job_dead_letter, the fn_job_* helpers). Additive apart from fn_job__retry_seconds, the delay
-- fn_job_fail_transient asks for, which is replaced in place (same signature); backoff stays off until
-- queue.retry.backoff_enabled is set (data.up.sql inserts it false), so applying this phase
-- changes no behaviour: the reaper refuses while queue.lease_reaper.enabled is false (phase 1
-- seeds it false), and replay and prune are operator/orchestrator calls.

-- Retention pruning of resolved dead letters, oldest first (fn_job_prune). Finished jobs use
-- phase 1's job_queue_finished_idx; the reaper uses phase 1's job_queue_lease_expires_idx.
CREATE INDEX job_dead_letter_resolved_idx ON conveyor.job_dead_letter (resolved_at)
    WHERE resolved_at IS NOT NULL;
COMMENT ON INDEX conveyor.job_dead_letter_resolved_idx IS
    'Retention pruning (fn_job_prune): resolved dead letters by resolved_at, oldest first.';

-- Backoff: the public calculator, then the private config-reading delay fn_job_fail_transient
-- and the reaper share. It replaces phase 1's fn_job__retry_seconds in place (CREATE OR REPLACE
-- keeps the function and its dependants); ddl.down.sql includes the .1 file again to restore it
-- exactly. fn_job_fail_transient itself is unchanged: it asks the helper for the delay.
\ir ../../functions/fn_job_backoff_seconds.2.sql
\ir ../../functions/fn_job__retry_seconds.2.sql

-- Operator and orchestrator functions: EXECUTE for conveyor_admin only.
\ir ../../functions/fn_job_lease_reaper.2.sql
\ir ../../functions/fn_job_dead_letter_replay.2.sql
\ir ../../functions/fn_job_prune.2.sql

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
