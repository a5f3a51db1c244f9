-- Phase 3 data down: delete exactly the rows data.up.sql inserted. Other heartbeat rows,
-- alerts, red zones, periodic jobs and the leader row are runtime data of phase 3's tables: the
-- runner archives them (`rollback --archive`) and ddl.down.sql drops them with their tables.
-- An event type still used by outbox events stays registered (the outbox keeps its history and
-- an event must not outlive its type); data.up.sql registers idempotently, so phase 3 can be
-- applied again. The receivers' cursors go: a re-apply starts them at the present again.

DELETE FROM conveyor.queue_heartbeat AS hb WHERE hb.component = 'iu_outbound_default';

DELETE FROM conveyor.event_outbox_cursor AS c WHERE c.consumer IN ('watchdog', 'red_zones');

DELETE FROM conveyor.event_type_registry AS etr
 WHERE etr.event_type IN ('system/queue_worker_silent', 'system/queue_worker_recovered')
   AND NOT EXISTS (SELECT 1 FROM conveyor.event_outbox AS eo WHERE eo.event_type = etr.event_type)
   AND NOT EXISTS (SELECT 1 FROM conveyor.iu_sql_event_route AS r
                    WHERE r.target_event_type = etr.event_type);

DELETE FROM conveyor.dot_config AS dc
 WHERE dc.key IN ('queue.heartbeat.enabled',
                  'queue.heartbeat.stale_threshold_seconds',
                  'queue.health.xmin_age_warn_seconds',
                  'queue.health.xmin_age_warn_xids',
                  'queue.health.dead_tuples_warn',
                  'queue.notify.bridge_enabled',
                  'queue.orchestrator.leader_lease_seconds',
                  'queue.periodic.missed_policy');
