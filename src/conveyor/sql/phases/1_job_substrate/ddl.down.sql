-- Undo ddl.up.sql: drop the views, functions and tables of phase 1, in reverse dependency order.
-- Dropping job_queue and job_dead_letter drops their rows: the runner (`conveyor phase rollback
-- 1`) refuses while they hold any, unless told to archive them first (`--archive FILE`). Run this
-- file by hand only on empty tables. Roles are cluster-wide and belong to phase 0; no down file
-- ever drops them.

DROP VIEW conveyor.v_dead_letter_all;
DROP VIEW conveyor.v_job_queue_dead_letter_open;
DROP VIEW conveyor.v_job_queue_in_progress;
DROP VIEW conveyor.v_job_queue_backlog;

DROP FUNCTION conveyor.fn_job_queue_resume(text, text);
DROP FUNCTION conveyor.fn_job_queue_pause(text, text);
DROP FUNCTION conveyor.fn_job_cancel_ack(bigint, uuid);
DROP FUNCTION conveyor.fn_job_cancel(bigint, text);
DROP FUNCTION conveyor.fn_job_release(bigint, uuid);
DROP FUNCTION conveyor.fn_job_snooze(bigint, uuid, numeric);
DROP FUNCTION conveyor.fn_job_extend_lease(bigint, uuid, integer);
DROP FUNCTION conveyor.fn_job_fail_permanent(bigint, uuid, text);
DROP FUNCTION conveyor.fn_job_fail_transient(bigint, uuid, text, numeric);
DROP FUNCTION conveyor.fn_job_complete_many(bigint[], uuid[]);
DROP FUNCTION conveyor.fn_job_complete(bigint, uuid, jsonb);
DROP FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer);
DROP FUNCTION conveyor.fn_job__claim_rows(text, text[], text[], integer, integer, text[], text[]);
DROP FUNCTION conveyor.fn_job__claim_validate(text, text[], text[], integer, integer);
DROP FUNCTION conveyor.fn_job_enqueue_many(jsonb);
DROP FUNCTION conveyor.fn_job__enqueue_insert(text[], jsonb[], text[], numeric[], timestamptz[], text[], numeric[], text[]);
DROP FUNCTION conveyor.fn_job_enqueue(text, jsonb, text, integer, timestamptz, text, integer);
DROP FUNCTION conveyor.fn_job__dead_letter(bigint, uuid, text, text);
DROP FUNCTION conveyor.fn_job__requeue(bigint, uuid, timestamptz, boolean);
DROP FUNCTION conveyor.fn_job__retry_seconds(integer);
DROP FUNCTION conveyor.fn_job__max_attempts(text, integer);
DROP FUNCTION conveyor.fn_job__attempt_limit(integer, jsonb, jsonb);
DROP FUNCTION conveyor.fn_job__enqueue_problem(text, jsonb, text, numeric, timestamptz, text, numeric, integer, integer);
DROP FUNCTION conveyor.fn_job__config_number(text, numeric);

-- Dropping a table drops its rows: refuse unless they are empty or were archived by the
-- runner (`conveyor phase rollback N --archive FILE`).
DO $$
BEGIN
    PERFORM conveyor_meta.fn_assert_empty_for_drop(ARRAY[
        'conveyor.job_dead_letter',
        'conveyor.job_queue'
    ]::regclass[]);
END
$$;

DROP TABLE conveyor.job_dead_letter;
DROP TABLE conveyor.job_queue;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
