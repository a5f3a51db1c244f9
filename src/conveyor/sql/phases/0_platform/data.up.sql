-- Phase 0 data: the vocabulary, routes, flag, outbound worker and consumer cursors the
-- platform starts with. Data only; the tables are created by ddl.up.sql.

INSERT INTO conveyor.event_type_registry (event_type, domain, description) VALUES
    ('staging.record_marked', 'staging', 'A record was staged in a collection (MARK)'),
    ('staging.record_approved', 'staging', 'A staged record was approved for cutting (APPROVE)'),
    ('staging.record_consumed', 'staging', 'A staged record was cut, i.e. consumed into its target (CUT)'),
    ('staging.record_verified', 'staging', 'The cut of a staged record was verified (VERIFY_CUT)'),
    ('staging.record_cleaned', 'staging', 'A staged record was cleaned up after its verified cut (CLEANUP)'),
    ('iu.template.instance_auto_composed', 'iu',
     'A template instance was composed automatically; payload {template, instance_key, params}');

INSERT INTO conveyor.iu_sql_event_route
       (route, source_table, operation, target_event_type, target_event_domain, description)
VALUES
    ('iu_staging_record.mark', 'iu_core.iu_staging_record', 'INSERT',
     'staging.record_marked', 'staging', 'iu_core.fn_iu_op_mark'),
    ('iu_staging_record.approve', 'iu_core.iu_staging_record', 'UPDATE',
     'staging.record_approved', 'staging', 'iu_core.fn_iu_op_approve'),
    ('iu_staging_record.cut', 'iu_core.iu_staging_record', 'UPDATE',
     'staging.record_consumed', 'staging', 'iu_core.fn_iu_op_cut'),
    ('iu_staging_record.verify_cut', 'iu_core.iu_staging_record', 'UPDATE',
     'staging.record_verified', 'staging', 'iu_core.fn_iu_op_verify_cut'),
    ('iu_staging_record.cleanup', 'iu_core.iu_staging_record', 'UPDATE',
     'staging.record_cleaned', 'staging', 'iu_core.fn_iu_op_cleanup');

INSERT INTO conveyor.dot_config (key, value, description) VALUES
    ('iu.auto_instantiate.legacy_enabled', 'true',
     'Legacy auto-instantiate path (fn_iu_auto_instantiate_run) on; phase 4 turns it off when dispatch takes over'),
    ('outbox.payload.max_bytes', '262144',
     'Largest payload fn_outbox_emit accepts, in bytes of its jsonb value (pg_column_size): every '
     'consumer reads every event.');

INSERT INTO conveyor.iu_outbound_worker (name, consumer, sink, cadence_seconds, enabled) VALUES
    ('iu_outbound_default', 'outbound.iu_outbound_default', 'table', 60, true);

-- The platform's two consumers start at the beginning of the outbox and show up in
-- v_event_outbox_cursor_lag from the start.
INSERT INTO conveyor.event_outbox_cursor (consumer) VALUES
    ('legacy.auto_instantiate'),
    ('outbound.iu_outbound_default');
