-- Phase 0 data down: delete the rows data.up.sql inserted. The other rows of phase 0's tables
-- (events, instances, deliveries, cursors, keys set later) are runtime data: the runner
-- archives them and ddl.down.sql drops them with their tables.
-- Seeded event types still used by outbox events or by routes added later stay: they are runtime
-- data then, archived and dropped with their tables by the rollback (never orphaned here).

DELETE FROM conveyor.event_outbox_cursor
 WHERE consumer IN ('legacy.auto_instantiate', 'outbound.iu_outbound_default');

DELETE FROM conveyor.iu_outbound_worker WHERE name = 'iu_outbound_default';

DELETE FROM conveyor.dot_config
 WHERE key IN ('iu.auto_instantiate.legacy_enabled', 'outbox.payload.max_bytes');

DELETE FROM conveyor.iu_sql_event_route
 WHERE route IN ('iu_staging_record.mark', 'iu_staging_record.approve', 'iu_staging_record.cut',
                 'iu_staging_record.verify_cut', 'iu_staging_record.cleanup');

DELETE FROM conveyor.event_type_registry AS etr
 WHERE etr.event_type IN ('staging.record_marked', 'staging.record_approved',
                          'staging.record_consumed', 'staging.record_verified',
                          'staging.record_cleaned', 'iu.template.instance_auto_composed')
   AND NOT EXISTS (SELECT 1 FROM conveyor.event_outbox AS eo WHERE eo.event_type = etr.event_type)
   AND NOT EXISTS (SELECT 1 FROM conveyor.iu_sql_event_route AS r
                    WHERE r.target_event_type = etr.event_type);
