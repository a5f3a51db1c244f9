-- Phase 8 down: undo ddl.up.sql. fn_job__claim_rows, fn_job_enqueue and fn_job__enqueue_insert
-- get their phase-1 versions back (the .1 files: body, comment and grants exactly phase 1's).
-- Dropping the concurrency_key column would lose the keys of jobs still waiting or running: this
-- REFUSES while a live job (waiting, queued, in_progress) has one (an archive holds the limit
-- tables' rows, not job_queue's). The limit tables lose their rows: the runner archives or
-- refuses first.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM conveyor.job_queue AS jq
                    WHERE jq.concurrency_key IS NOT NULL
                      AND jq.status IN ('waiting', 'queued', 'in_progress')) THEN
        RAISE EXCEPTION 'phase 8 rollback: live jobs carry a concurrency_key'
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Let them finish, or clear the key (UPDATE conveyor.job_queue SET concurrency_key = NULL …) before rolling back phase 8.';
    END IF;
END;
$$;

DROP VIEW conveyor.v_job_limits;

DROP FUNCTION conveyor.fn_job_enqueue(text, jsonb, text, integer, timestamptz, text, integer, text);
\ir ../../functions/fn_job_enqueue.1.sql
\ir ../../functions/fn_job__enqueue_insert.1.sql
\ir ../../functions/fn_job__claim_rows.1.sql
DROP FUNCTION conveyor.fn_job_key_limit(text, text, integer, integer, numeric);
DROP FUNCTION conveyor.fn_job_queue_limit(text, integer, integer, numeric);
DROP FUNCTION conveyor.fn_job__claim_limited(text, text[], integer, text[], text[]);
DROP FUNCTION conveyor.fn_job__claim_keys(text, text[], text[], text[], text, integer, integer, boolean, timestamptz);
DROP FUNCTION conveyor.fn_job__limit_keys(text, text, integer);
DROP FUNCTION conveyor.fn_job__limit_check(text, integer, integer, numeric);
DROP FUNCTION conveyor.fn_job__limit_target(text, text, boolean, text);
DROP FUNCTION conveyor.fn_job__limit_tokens(numeric, timestamptz, integer, numeric, timestamptz);
DROP FUNCTION conveyor.fn_job__limit_burst(integer, numeric);

DO $$
BEGIN
    PERFORM conveyor_meta.fn_assert_empty_for_drop(ARRAY[
        'conveyor.job_key_limit',
        'conveyor.job_queue_limit'
    ]::regclass[]);
END
$$;

DROP TABLE conveyor.job_key_limit;
DROP TABLE conveyor.job_queue_limit;
DROP INDEX conveyor.job_queue_key_running_idx;
DROP INDEX conveyor.job_queue_key_idx;
ALTER TABLE conveyor.job_queue DROP CONSTRAINT job_queue_concurrency_key_check;
ALTER TABLE conveyor.job_queue DROP COLUMN concurrency_key;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
