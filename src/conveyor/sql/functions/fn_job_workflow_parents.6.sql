-- fn_job_workflow_parents: what a step's handler may read of its parents, for workers in any
-- language (Python's JobContext.parents() calls it): each parent step's outcome and its job's
-- result. A job that is not a workflow step answers no parents. Read-only.
CREATE OR REPLACE FUNCTION conveyor.fn_job_workflow_parents(
    job_id bigint
) RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_step    record;
    v_parents jsonb;
BEGIN
    IF NOT fn_config_enabled('workflow.mot.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'mot_disabled',
                                  'flag', 'workflow.mot.enabled');
    END IF;
    IF fn_job_workflow_parents.job_id IS NULL THEN
        RAISE EXCEPTION 'fn_job_workflow_parents: job_id is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id of the step''s job (the job_id fn_job_claim returned).';
    END IF;
    SELECT st.workflow_id, st.step_key, st.parents INTO v_step
      FROM job_workflow_step AS st
     WHERE st.job_id = fn_job_workflow_parents.job_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_workflow_parents.job_id,
                                  'workflow_id', NULL, 'step', NULL, 'parents', '{}'::jsonb);
    END IF;
    SELECT coalesce(jsonb_object_agg(p.step_key, jsonb_build_object(
               'outcome', coalesce(p.outcome, jq.status), 'job_id', p.job_id, 'result', jq.result)), '{}')
      INTO v_parents
      FROM job_workflow_step AS p
      LEFT JOIN job_queue AS jq ON jq.id = p.job_id
     WHERE p.workflow_id = v_step.workflow_id
       AND p.step_key = ANY (v_step.parents);
    RETURN jsonb_build_object('ok', true, 'job_id', fn_job_workflow_parents.job_id,
                              'workflow_id', v_step.workflow_id, 'step', v_step.step_key,
                              'parents', v_parents);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_workflow_parents(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_workflow_parents(bigint) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_workflow_parents(bigint) IS
    'The parents of the workflow step whose job is job_id, with their results. → {"ok":true,"job_id","workflow_id","step","parents":{"<key>":{"outcome","job_id","result"}}}; not a workflow job → workflow_id null and parents {}. Refuses mot_disabled while workflow.mot.enabled is false. Example: SELECT conveyor.fn_job_workflow_parents(1234);';
