-- Undo data.up.sql: remove exactly the settings phase 1 inserted. Per-kind limits
-- (queue.retry.max_attempts.<kind>) belong to whoever set them and are left alone.
DELETE FROM conveyor.dot_config AS dc
 WHERE dc.key IN ('queue.job_substrate.enabled',
                  'queue.lease_reaper.enabled',
                  'queue.retry.base_seconds',
                  'queue.retry.cap_seconds',
                  'queue.retry.jitter',
                  'queue.retry.max_attempts.default',
                  'queue.retry.max_releases',
                  'queue.lease.default_seconds',
                  'queue.payload.max_bytes',
                  'queue.payload.max_depth',
                  'queue.paused_queues');
