-- Phase 6 down: undo ddl.up.sql in reverse order. It REFUSES while a workflow step's job is
-- still live in job_queue (waiting, queued or in progress): without phase 6 nothing would ever
-- release a waiting step, so those workflows must be cancelled or finish first. data.down.sql
-- carries the same guard on purpose: each file runs in its own transaction and may be run alone
-- (psql -1 -f), so each refuses for itself rather than trust that the other ran. job_queue and
-- job_dead_letter are phase 1's and keep their rows; workflow_id stays on finished jobs (the
-- column is phase 1's). Dropped tables lose their rows: the runner archives or refuses first.

DO $$
DECLARE
    v_live text;
BEGIN
    SELECT string_agg(DISTINCT jq.workflow_id::text, ', ') INTO v_live
      FROM conveyor.job_queue AS jq
     WHERE jq.workflow_id IS NOT NULL AND jq.status IN ('waiting', 'queued', 'in_progress');
    IF v_live IS NOT NULL THEN
        RAISE EXCEPTION 'phase 6 rollback: workflows still have live steps: %', left(v_live, 1000)
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Cancel them (conveyor workflow cancel ID) or let them finish before rolling back phase 6.';
    END IF;
END;
$$;

DROP VIEW conveyor.v_job_workflow_health;
DROP VIEW conveyor.v_job_workflow_step;
DROP VIEW conveyor.v_job_workflow;
DROP VIEW conveyor.v_mot_template;

DROP TRIGGER job_dead_letter_workflow_replay_trg ON conveyor.job_dead_letter;
DROP TRIGGER job_queue_workflow_step_dead_lettered_trg ON conveyor.job_queue;
DROP TRIGGER job_queue_workflow_step_ended_trg ON conveyor.job_queue;
DROP TRIGGER mot_template_guard_trg ON conveyor.mot_template;

DROP FUNCTION conveyor.fn_job_workflow_parents(bigint);
DROP FUNCTION conveyor.fn_job_workflow_refresh();
DROP FUNCTION conveyor.fn_job_workflow_complete_step(bigint, text, text, jsonb);
DROP FUNCTION conveyor.fn_job_workflow_cancel(bigint, text, text);
DROP FUNCTION conveyor.fn_mot_graph_emit(text, integer, jsonb, text, boolean, text);
DROP FUNCTION conveyor.fn_mot_template_register(text, jsonb, text, text);
DROP FUNCTION conveyor.fn_job_workflow__step_replayed();
DROP FUNCTION conveyor.fn_job_workflow__job_ended();
DROP FUNCTION conveyor.fn_job_workflow__step_end(bigint, bigint, text);
DROP FUNCTION conveyor.fn_job_workflow__satisfy(bigint, text[], boolean);
DROP FUNCTION conveyor.fn_mot__template_guard();
DROP FUNCTION conveyor.fn_mot__template_problem(jsonb);

-- Dropping a table drops its rows: refuse unless they are empty or were archived by the
-- runner (`conveyor phase rollback 6 --archive FILE`).
DO $$
BEGIN
    PERFORM conveyor_meta.fn_assert_empty_for_drop(ARRAY[
        'conveyor.job_workflow_step',
        'conveyor.job_workflow',
        'conveyor.mot_template'
    ]::regclass[]);
END
$$;

DROP TABLE conveyor.job_workflow_step;
DROP TABLE conveyor.job_workflow;
DROP TABLE conveyor.mot_template;

ALTER TABLE conveyor.executor_kind DROP CONSTRAINT executor_kind_not_mot_check;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
