-- Phase 4 down: undo ddl.up.sql in reverse dependency order. fn_job_claim gets its phase-1
-- signature back (the .1 file, so body, comment and grants are exactly phase 1's). The route
-- domain CHECK is narrowed back to iu, staging, system; this REFUSES while a route uses one of
-- the six domains phase 4 added (narrowing would have to delete or rewrite those routes, which is
-- an operator's decision). Dropped tables lose their rows: the runner archives or refuses first.
-- Roles are cluster-wide and belong to phase 0; no down file ever drops them.

DO $$
DECLARE
    v_routes text;
BEGIN
    SELECT string_agg(r.route || ' (' || r.target_event_domain || ')', ', ' ORDER BY r.route)
      INTO v_routes
      FROM conveyor.iu_sql_event_route AS r
     WHERE r.target_event_domain NOT IN ('iu', 'staging', 'system');
    IF v_routes IS NOT NULL THEN
        RAISE EXCEPTION 'phase 4 rollback: routes use a domain outside iu, staging, system: %',
                        left(v_routes, 1000)
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Delete or disable-and-delete those iu_sql_event_route rows (archive them first) before rolling back phase 4.';
    END IF;
END;
$$;

DROP VIEW conveyor.v_job_subscription;
DROP VIEW conveyor.v_consumer_dead_letter;
DROP VIEW conveyor.v_consumer_unmatched;
DROP VIEW conveyor.v_consumer_registry;

DROP TRIGGER consumer_registry_validate_trg ON conveyor.consumer_registry;

DROP FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer, text);
\ir ../../functions/fn_job_claim.1.sql
-- back to phase 0's emit (no NOTIFY for dispatch)
\ir ../../functions/fn_outbox_emit.0.sql

DROP FUNCTION conveyor.fn_job_unsubscribe(text, text);
DROP FUNCTION conveyor.fn_job_subscribe(text, text, text);
DROP FUNCTION conveyor.fn_consumer_dispatch(integer);
DROP FUNCTION conveyor.fn_consumer_disable(text, text);
DROP FUNCTION conveyor.fn_consumer_register(text, text, text, text, text, text, integer, jsonb, regprocedure, text);
DROP FUNCTION conveyor.fn_consumer__validate();
DROP FUNCTION conveyor.fn_consumer__problem(text, text, text, text, text, text, integer, jsonb, regprocedure);

-- Dropping a table drops its rows: refuse unless they are empty or were archived by the
-- runner (`conveyor phase rollback 4 --archive FILE`).
DO $$
BEGIN
    PERFORM conveyor_meta.fn_assert_empty_for_drop(ARRAY[
        'conveyor.consumer_dead_letter',
        'conveyor.consumer_unmatched',
        'conveyor.consumer_delivery',
        'conveyor.consumer_registry',
        'conveyor.job_subscription',
        'conveyor.executor_kind'
    ]::regclass[]);
END
$$;

DROP TABLE conveyor.consumer_dead_letter;
DROP TABLE conveyor.consumer_unmatched;
DROP TABLE conveyor.consumer_delivery;
DROP TABLE conveyor.consumer_registry;
DROP TABLE conveyor.job_subscription;
DROP TABLE conveyor.executor_kind;

ALTER TABLE conveyor.iu_sql_event_route
    DROP CONSTRAINT iu_sql_event_route_target_event_domain_check;
ALTER TABLE conveyor.iu_sql_event_route
    ADD CONSTRAINT iu_sql_event_route_target_event_domain_check
    CHECK (target_event_domain IN ('iu', 'staging', 'system'));
COMMENT ON COLUMN conveyor.iu_sql_event_route.target_event_domain IS
    'Domain of target_event_type; CHECK iu_sql_event_route_target_event_domain_check allows iu, staging, system (phase 4 widens it by name)';

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
