-- Phase 5 down: undo ddl.up.sql in reverse order. The views get their phase 0 / phase 3
-- definitions back by renaming the untouched originals (so body, comment and grants are exactly
-- theirs). The pilot's tables are dropped with their rows: the runner archives or refuses first
-- (`conveyor phase rollback 5 --archive FILE`); the staging records themselves stay in
-- iu_core.iu_staging_record (phase 0's), so a re-applied pilot finds them where they stood.

DROP VIEW conveyor.v_queue_health;
ALTER VIEW conveyor.v_queue_health_base RENAME TO v_queue_health;

DROP VIEW conveyor.v_iu_staging_record;
ALTER VIEW conveyor.v_iu_staging_record_base RENAME TO v_iu_staging_record;

DROP INDEX conveyor.job_queue_pilot_record_idx;

DROP FUNCTION conveyor.fn_pilot_cleanup(bigint, text);
DROP FUNCTION conveyor.fn_pilot_verify_cut(bigint, text);
DROP FUNCTION conveyor.fn_pilot_cut(bigint, text, bigint);
DROP FUNCTION conveyor.fn_pilot_route(bigint);
DROP FUNCTION conveyor.fn_pilot_mark(text, text, text, text, text);
DROP FUNCTION conveyor.fn_pilot__lock(bigint, text, text);

DO $$
BEGIN
    PERFORM conveyor_meta.fn_assert_empty_for_drop(ARRAY[
        'conveyor.pilot_cut_target',
        'conveyor.pilot_staged_payload'
    ]::regclass[]);
END
$$;

DROP TABLE conveyor.pilot_cut_target;
DROP TABLE conveyor.pilot_staged_payload;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
