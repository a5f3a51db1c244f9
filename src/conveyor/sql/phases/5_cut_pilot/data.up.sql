-- Phase 5 data: the pilot's flags and settings, its four consumer_registry rows and the agent
-- executor's subscription to staging.*. Data only; tables and functions are in ddl.up.sql. A key
-- or row that already exists makes this file fail rather than silently keep someone else's value.
--
-- The registry rows. ROADMAP §7.1 lists three (approved → cut, consumed → verify_cut,
-- cleaned → terminal); the fourth, staging.record_verified → staging.cleanup, is what makes
-- CLEANUP automatic as §7.1 also asks ("CUT and CLEANUP automate"): without it a verified record
-- would wait for an operator. All four call fn_pilot_route, which enqueues the step's job for
-- records of pilot.cut.collection only (a registry row matches event types, not payloads); the
-- terminal row records staging.record_cleaned as handled (delivery 'called') and enqueues nothing,
-- so the pilot's events never show up as unmatched.

INSERT INTO conveyor.dot_config (key, value, description) VALUES
    ('pilot.cut.enabled', 'false',
     'MARK/CUT pilot (phase 5): while false the cut, verify_cut and cleanup steps refuse with '
     'pilot_cut_disabled and their jobs wait (snoozed); switching it on resumes them.'),
    ('pilot.cut.collection', '"pilot"',
     'The one staging collection the pilot cuts (ROADMAP RM-Q3); records of other collections '
     'are never routed or cut.'),
    ('pilot.cut.payload_max_bytes', '65536',
     'Largest payload fn_pilot_mark stages, in bytes.'),
    ('pilot.cut.stuck_threshold_seconds', '300',
     'A pilot record waiting longer than this between steps is stuck (v_iu_staging_record.stuck, '
     'the pilot row of v_queue_health turns stale).');

INSERT INTO conveyor.consumer_registry (consumer, event_pattern, action, target, created_by) VALUES
    ('pilot.cut', 'staging.record_approved', 'call_function',
     'conveyor.fn_pilot_route(bigint)'::regprocedure, 'phase 5'),
    ('pilot.verify_cut', 'staging.record_consumed', 'call_function',
     'conveyor.fn_pilot_route(bigint)'::regprocedure, 'phase 5'),
    ('pilot.cleanup', 'staging.record_verified', 'call_function',
     'conveyor.fn_pilot_route(bigint)'::regprocedure, 'phase 5'),
    ('pilot.cleaned', 'staging.record_cleaned', 'call_function',
     'conveyor.fn_pilot_route(bigint)'::regprocedure, 'phase 5');

INSERT INTO conveyor.job_subscription (executor, kind_pattern, created_by)
VALUES ('agent', 'staging.*', 'phase 5');
