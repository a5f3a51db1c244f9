-- Undo data.up.sql: remove exactly the settings phase 2 inserted. Per-kind limits
-- (queue.retry.max_attempts.<kind>) belong to whoever set them and are left alone.
DELETE FROM conveyor.dot_config AS dc
 WHERE dc.key IN ('queue.retry.backoff_enabled',
                  'queue.retention.succeeded_seconds',
                  'queue.retention.cancelled_seconds',
                  'queue.retention.dead_letter_resolved_seconds');
