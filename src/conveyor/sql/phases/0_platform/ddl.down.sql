-- Phase 0 down: drop everything ddl.up.sql created, dependents first. Without CASCADE on
-- purpose: if a later phase's objects are still installed, this fails instead of taking them
-- along (roll back later phases first). Tables are dropped with their rows; the runner
-- archives or refuses before it gets here, and data.down.sql refuses while events exist.
-- Not undone: the roles conveyor_admin, conveyor_worker and conveyor_reader are cluster-wide
-- and may serve other databases, so they stay (with their connection limits) (they hold no privileges once these objects
-- are gone, so an operator can drop them by hand). Their per-database settings for THIS
-- database are undone (RESET, last below); those of other databases are left alone.

DROP VIEW conveyor.v_iu_outbound_worker;
DROP VIEW conveyor.v_event_outbox_cursor_lag;
DROP VIEW conveyor.v_iu_staging_record;

DROP FUNCTION conveyor.fn_iu_outbound_tick(text, integer);
DROP FUNCTION conveyor.fn_iu_auto_instantiate_run(integer);
DROP FUNCTION conveyor.fn_iu_auto_instantiate_from_event(bigint);
DROP FUNCTION iu_core.fn_iu_op_cleanup(bigint, text);
DROP FUNCTION iu_core.fn_iu_op_verify_cut(bigint, text);
DROP FUNCTION iu_core.fn_iu_op_cut(bigint, text, text);
DROP FUNCTION iu_core.fn_iu_op_approve(bigint, text);
DROP FUNCTION iu_core.fn_iu_op_mark(text, text, text, text);
DROP FUNCTION iu_core.fn_iu_op_transition(bigint, text, text, text);
DROP FUNCTION iu_core.fn_iu_op_emit(text, bigint, text, text, text);
DROP FUNCTION conveyor.fn_outbox_advance(text, xid8, bigint);
DROP FUNCTION conveyor.fn_outbox_read(text, integer);
DROP FUNCTION conveyor.fn_outbox_horizon();
DROP FUNCTION conveyor.fn_outbox_emit(text, jsonb, text);
DROP FUNCTION conveyor.fn_outbox__append(text, jsonb, text);
DROP FUNCTION conveyor.fn_event_type_register(text, text);
DROP FUNCTION conveyor.fn_config_set(text, jsonb, text, text);
DROP FUNCTION conveyor.fn_config_enabled(text);
DROP FUNCTION conveyor.fn_config_get(text);

-- Dropping a table drops its rows: refuse unless they are empty or were archived by the
-- runner (`conveyor phase rollback N --archive FILE`).
DO $$
BEGIN
    PERFORM conveyor_meta.fn_assert_empty_for_drop(ARRAY[
        'conveyor.iu_outbound_delivery',
        'conveyor.iu_outbound_worker',
        'conveyor.iu_template_instance',
        'iu_core.iu_staging_record',
        'conveyor.iu_sql_event_route',
        'conveyor.event_outbox_cursor',
        'conveyor.event_outbox',
        'conveyor.event_type_registry',
        'conveyor.dot_config'
    ]::regclass[]);
END
$$;

DROP TABLE conveyor.iu_outbound_delivery;
DROP TABLE conveyor.iu_outbound_worker;
DROP TABLE conveyor.iu_template_instance;
DROP TABLE iu_core.iu_staging_record;
DROP TABLE conveyor.iu_sql_event_route;
DROP TABLE conveyor.event_outbox_cursor;
DROP TABLE conveyor.event_outbox;
DROP TABLE conveyor.event_type_registry;
DROP TABLE conveyor.dot_config;

DROP SCHEMA iu_core;
DROP SCHEMA conveyor;

-- The per-role guards ddl.up.sql set for this database (ALTER ROLE … IN DATABASE is per
-- database, hence the DO block with the database's name). Only these settings are reset, so
-- an operator's own settings for the roles stay.
DO $$
BEGIN
    EXECUTE format('ALTER ROLE conveyor_reader IN DATABASE %I RESET default_transaction_read_only',
                   current_database());
    EXECUTE format('ALTER ROLE conveyor_reader IN DATABASE %I RESET idle_in_transaction_session_timeout',
                   current_database());
    EXECUTE format('ALTER ROLE conveyor_reader IN DATABASE %I RESET lock_timeout',
                   current_database());
    EXECUTE format('ALTER ROLE conveyor_reader IN DATABASE %I RESET statement_timeout',
                   current_database());
    EXECUTE format('ALTER ROLE conveyor_worker IN DATABASE %I RESET idle_in_transaction_session_timeout',
                   current_database());
    EXECUTE format('ALTER ROLE conveyor_worker IN DATABASE %I RESET lock_timeout',
                   current_database());
    EXECUTE format('ALTER ROLE conveyor_worker IN DATABASE %I RESET statement_timeout',
                   current_database());
END;
$$;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
