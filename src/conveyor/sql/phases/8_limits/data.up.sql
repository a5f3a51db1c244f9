-- Phase 8 data: the limits flag, off. While false, claims ignore the limits stored and
-- fn_job_queue_limit / fn_job_key_limit refuse with limits_disabled.
INSERT INTO conveyor.dot_config (key, value, description) VALUES
    ('queue.limits.enabled', 'false',
     'Limits (phase 8): fn_job_claim enforces job_queue_limit / job_key_limit and takes keys in turn. '
     'While false claims ignore them and fn_job_queue_limit / fn_job_key_limit refuse with limits_disabled.');
