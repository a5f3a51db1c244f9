-- fn_job_workflow_complete_step: a person finishes an operator step (executor operator), e.g.
-- the approval of a human-in-the-loop flow. The step's job must be queued (its parents have
-- ended and nobody claimed it): it becomes succeeded with result, and the step records who
-- completed it and when; the job_queue trigger then releases the children in this transaction,
-- exactly as a worker's fn_job_complete would. One UPDATE decides on the job row's current
-- version, so two operators at once complete it once (the second gets already_finished).
CREATE OR REPLACE FUNCTION conveyor.fn_job_workflow_complete_step(
    workflow_id  bigint,
    step         text,
    completed_by text  DEFAULT NULL,
    result       jsonb DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_by     text := coalesce(nullif(fn_job_workflow_complete_step.completed_by, ''), session_user::text);
    v_step   record;
    v_status text;
BEGIN
    IF NOT fn_config_enabled('workflow.mot.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'mot_disabled',
                                  'flag', 'workflow.mot.enabled');
    END IF;
    IF fn_job_workflow_complete_step.workflow_id IS NULL OR fn_job_workflow_complete_step.step IS NULL THEN
        RAISE EXCEPTION 'fn_job_workflow_complete_step: workflow_id and step are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the workflow id and the key of its operator step, e.g. (42, ''approve'').';
    END IF;
    IF octet_length(v_by) > 255 THEN
        RAISE EXCEPTION 'fn_job_workflow_complete_step: completed_by must be at most 255 bytes'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the person (or pass NULL for the session user).';
    END IF;
    IF fn_job_workflow_complete_step.result IS NOT NULL
       AND jsonb_typeof(fn_job_workflow_complete_step.result) <> 'object' THEN
        RAISE EXCEPTION 'fn_job_workflow_complete_step: result must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass result => ''{"approved": true}'' or NULL.';
    END IF;

    SELECT st.job_id, st.executor INTO v_step
      FROM job_workflow_step AS st
     WHERE st.workflow_id = fn_job_workflow_complete_step.workflow_id
       AND st.step_key = fn_job_workflow_complete_step.step;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found',
                                  'workflow_id', fn_job_workflow_complete_step.workflow_id,
                                  'step', fn_job_workflow_complete_step.step);
    END IF;
    IF v_step.executor <> 'operator' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_an_operator_step',
                                  'workflow_id', fn_job_workflow_complete_step.workflow_id,
                                  'step', fn_job_workflow_complete_step.step, 'executor', v_step.executor);
    END IF;

    UPDATE job_queue AS jq
       SET status = 'succeeded', result = fn_job_workflow_complete_step.result,
           started_at = coalesce(jq.started_at, now()), finished_at = now()
     WHERE jq.id = v_step.job_id
       AND jq.status = 'queued';
    IF FOUND THEN
        UPDATE job_workflow_step AS st
           SET completed_by = v_by, completed_at = now()
         WHERE st.workflow_id = fn_job_workflow_complete_step.workflow_id
           AND st.step_key = fn_job_workflow_complete_step.step;
        RETURN jsonb_build_object('ok', true, 'workflow_id', fn_job_workflow_complete_step.workflow_id,
                                  'step', fn_job_workflow_complete_step.step, 'job_id', v_step.job_id,
                                  'completed_by', v_by);
    END IF;

    SELECT jq.status INTO v_status FROM job_queue AS jq WHERE jq.id = v_step.job_id;
    RETURN jsonb_build_object(
        'refused', true,
        'reason', CASE v_status WHEN 'waiting' THEN 'not_ready' WHEN 'in_progress' THEN 'in_progress'
                                ELSE 'already_finished' END,
        'workflow_id', fn_job_workflow_complete_step.workflow_id,
        'step', fn_job_workflow_complete_step.step, 'status', coalesce(v_status, 'dead_letter'));
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_workflow_complete_step(bigint, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_workflow_complete_step(bigint, text, text, jsonb) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_workflow_complete_step(bigint, text, text, jsonb) IS
    'Operator: finish a queued operator step (recorded with completed_by, default session_user, and the time); its children are released in the same transaction. → {"ok":true,"workflow_id","step","job_id","completed_by"}; waiting on parents → {"refused":true,"reason":"not_ready",…}; claimed → in_progress; done → already_finished (with "status"); not an operator step → not_an_operator_step; unknown → not_found. Refuses mot_disabled while workflow.mot.enabled is false. Example: SELECT conveyor.fn_job_workflow_complete_step(42, ''approve'', completed_by => ''alice'');';
