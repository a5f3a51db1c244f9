-- Phase 2 settings (dot_config). Backoff ships switched off (ROADMAP §4.1: "no behavioural change
-- yet"): until queue.retry.backoff_enabled is true, fn_job_fail_transient and the lease reaper
-- delay a retry by the fixed queue.retry.base_seconds, as in phase 1. The backoff's own settings
-- (queue.retry.base_seconds, .cap_seconds, .jitter), queue.retry.max_attempts.default and
-- queue.lease_reaper.enabled were seeded by phase 1 and are left as they are.
--
-- Per-kind attempt limits are plain keys, one per job kind, set by whoever ratifies the number
-- (none is seeded here):
--     SELECT conveyor.fn_config_set('queue.retry.max_attempts.email.send', '3');
-- A job's own max_attempts column wins over queue.retry.max_attempts.<kind>, which wins over
-- queue.retry.max_attempts.default. (dot_config keys are lower-case a-z0-9_ words joined by dots,
-- so only kinds spelled that way can have a per-kind key.)
--
-- A key that already exists makes this file fail rather than silently keep someone else's value.
INSERT INTO conveyor.dot_config (key, value, description) VALUES
    ('queue.retry.backoff_enabled', 'false',
     'Exponential backoff for retries (phase 2): while false, fn_job_fail_transient and the lease '
     'reaper wait the fixed queue.retry.base_seconds; when true, min(queue.retry.cap_seconds, '
     'base_seconds · 2^(attempt-1)) ± queue.retry.jitter. A worker''s explicit retry_in_seconds '
     'always wins.'),
    ('queue.retention.succeeded_seconds', '604800',
     'fn_job_prune deletes succeeded jobs whose finished_at is older than this many seconds '
     '(default 7 days).'),
    ('queue.retention.cancelled_seconds', '604800',
     'fn_job_prune deletes cancelled jobs whose finished_at is older than this many seconds '
     '(default 7 days).'),
    ('queue.retention.dead_letter_resolved_seconds', '2592000',
     'fn_job_prune deletes resolved (replayed or dismissed) dead letters whose resolved_at is older '
     'than this many seconds (default 30 days). Open dead letters are never pruned.');
