-- Phase 4 data down: delete the rows data.up.sql inserted and switch the legacy auto-instantiate
-- path back on (phase 0's value). Its cursor was never moved by phase 4, so it resumes where it
-- stopped; events dispatch already applied are found applied (idempotent per source_event_id).
-- Registry rows, subscriptions, deliveries, unmatched events and dead letters added since are
-- runtime data of phase 4's tables: the runner archives them and ddl.down.sql drops the tables.
-- The executor rows go only when no subscription or registry row still names them.

DELETE FROM conveyor.event_outbox_cursor AS c WHERE c.consumer = 'dispatch';

DELETE FROM conveyor.consumer_registry AS cr
 WHERE cr.consumer = 'legacy.auto_instantiate'
   AND cr.event_pattern = 'iu.template.instance_auto_composed';

DELETE FROM conveyor.executor_kind AS ek
 WHERE ek.executor IN ('agent', 'codex', 'dot', 'external_worker', 'operator')
   AND NOT EXISTS (SELECT 1 FROM conveyor.job_subscription AS js WHERE js.executor = ek.executor)
   AND NOT EXISTS (SELECT 1 FROM conveyor.consumer_registry AS cr WHERE cr.job_executor = ek.executor);

UPDATE conveyor.dot_config AS dc
   SET value = 'true', updated_at = now(), updated_by = current_user
 WHERE dc.key = 'iu.auto_instantiate.legacy_enabled';

DELETE FROM conveyor.dot_config AS dc WHERE dc.key = 'queue.dispatch.enabled';
