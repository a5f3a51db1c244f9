-- Phase 1 settings (dot_config). The substrate and the lease reaper start disabled: applying
-- phase 1 changes no behaviour until an operator enables queue.job_substrate.enabled. A key that
-- already exists makes this file fail rather than silently keep someone else's value.
INSERT INTO conveyor.dot_config (key, value, description) VALUES
    ('queue.job_substrate.enabled', 'false',
     'Master switch of the job substrate (phase 1): while false every fn_job_* function refuses with '
     'job_substrate_disabled and changes nothing.'),
    ('queue.lease_reaper.enabled', 'false',
     'Lets the lease reaper (phase 2) rescue jobs whose lease expired.'),
    ('queue.retry.base_seconds', '1',
     'Retry delay in seconds for fn_job_fail_transient when the worker gives none; the base of the '
     'exponential backoff from phase 2.'),
    ('queue.retry.cap_seconds', '3600',
     'Longest backoff delay in seconds (phase 2).'),
    ('queue.retry.jitter', '0.1',
     'Backoff jitter as a fraction of the delay, ± (phase 2).'),
    ('queue.retry.max_attempts.default', '5',
     'Attempts a job gets when neither the job nor queue.retry.max_attempts.<kind> sets a limit '
     '(a JSON number from 1 to 1000).'),
    ('queue.retry.max_releases', '100',
     'Times a job may be released unfinished (fn_job_release, a worker draining) before the next '
     'release dead-letters it with reason max_releases_exceeded (a JSON number ≥ 0). Snoozes '
     'do not count.'),
    ('queue.lease.default_seconds', '60',
     'Lease length in seconds for fn_job_claim and fn_job_extend_lease when the worker gives none.'),
    ('queue.payload.max_bytes', '262144',
     'Largest payload fn_job_enqueue accepts, in bytes of its jsonb value (pg_column_size).'),
    ('queue.payload.max_depth', '32',
     'Deepest payload nesting fn_job_enqueue accepts (levels of objects/arrays below the top).'),
    ('queue.paused_queues', '[]',
     'Queues whose jobs fn_job_claim leaves alone (fn_job_queue_pause / fn_job_queue_resume).');
