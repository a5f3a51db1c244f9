-- fn_job_workflow__job_ended: trigger function of the two job_queue triggers of phase 6. A
-- workflow step's job ended: UPDATE to succeeded or cancelled (fn_job_complete,
-- fn_job_complete_many, fn_job_cancel, fn_job_cancel_ack, the reaper, an operator's
-- fn_job_workflow_complete_step), or DELETE of an in_progress row (moved to job_dead_letter by a
-- permanent failure, exhausted attempts or an expired lease). The triggers' WHEN clauses test
-- workflow_id IS NOT NULL before anything is queued, so a plain job never reaches this function:
-- plain jobs pay one null test per changed row and nothing else.
-- Private (no EXECUTE grant; triggers need none).
CREATE OR REPLACE FUNCTION conveyor.fn_job_workflow__job_ended()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM fn_job_workflow__step_end(OLD.workflow_id, OLD.id, 'failed');
    ELSE
        PERFORM fn_job_workflow__step_end(NEW.workflow_id, NEW.id, NEW.status);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_workflow__job_ended() FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job_workflow__job_ended() IS
    'Private trigger function: a workflow step''s job succeeded, was cancelled or was dead-lettered → fn_job_workflow__step_end.';
