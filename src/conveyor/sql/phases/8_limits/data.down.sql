-- Phase 8 data down: remove the flag data.up.sql inserted. Limit rows are runtime data of phase
-- 8's tables: the runner archives them and ddl.down.sql drops the tables.
DELETE FROM conveyor.dot_config AS dc WHERE dc.key = 'queue.limits.enabled';
