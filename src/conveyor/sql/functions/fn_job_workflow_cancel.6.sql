-- fn_job_workflow_cancel: cancel a workflow. The workflow row is locked and marked cancelled
-- first, so from then on no step end releases anything; then every step that has not run
-- (waiting, queued) is cancelled and every running step is asked to stop (cancel_requested_at:
-- the handler sees it in fn_job_extend_lease and acks with fn_job_cancel_ack). Job rows another
-- transaction holds at this instant (a claim in flight) are skipped rather than waited for, so
-- no lock cycle can form with a completing step; fn_job_workflow_refresh asks them to stop on
-- its next round. A failed workflow may be cancelled too (that ends its held steps).
CREATE OR REPLACE FUNCTION conveyor.fn_job_workflow_cancel(
    workflow_id  bigint,
    reason       text DEFAULT NULL,
    cancelled_by text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_status    text;
    v_reason    text := left(coalesce(fn_job_workflow_cancel.reason, 'workflow cancelled'), 2000);
    v_cancelled integer;
    v_requested integer;
BEGIN
    IF NOT fn_config_enabled('workflow.mot.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'mot_disabled',
                                  'flag', 'workflow.mot.enabled');
    END IF;
    IF fn_job_workflow_cancel.workflow_id IS NULL THEN
        RAISE EXCEPTION 'fn_job_workflow_cancel: workflow_id is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the workflow_id that fn_mot_graph_emit returned.';
    END IF;

    SELECT jw.status INTO v_status
      FROM job_workflow AS jw
     WHERE jw.id = fn_job_workflow_cancel.workflow_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found',
                                  'workflow_id', fn_job_workflow_cancel.workflow_id);
    END IF;
    IF v_status IN ('succeeded', 'cancelled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'already_finished',
                                  'workflow_id', fn_job_workflow_cancel.workflow_id, 'status', v_status);
    END IF;

    UPDATE job_workflow AS jw
       SET status = 'cancelled', finished_at = now(), cancel_reason = v_reason,
           cancelled_by = coalesce(nullif(fn_job_workflow_cancel.cancelled_by, ''), session_user)
     WHERE jw.id = fn_job_workflow_cancel.workflow_id;

    WITH live AS (
        SELECT j.id
          FROM job_workflow_step AS st
          JOIN job_queue AS j ON j.id = st.job_id
         WHERE st.workflow_id = fn_job_workflow_cancel.workflow_id
           AND st.outcome IS NULL
           AND j.status IN ('waiting', 'queued', 'in_progress')
           FOR UPDATE OF j SKIP LOCKED
    ), changed AS (
        UPDATE job_queue AS jq
           SET status = CASE WHEN jq.status = 'in_progress' THEN 'in_progress' ELSE 'cancelled' END,
               finished_at = CASE WHEN jq.status = 'in_progress' THEN NULL ELSE now() END,
               cancel_requested_at = coalesce(jq.cancel_requested_at, now()),
               cancel_reason = coalesce(jq.cancel_reason, v_reason)
          FROM live AS l
         WHERE jq.id = l.id
        RETURNING jq.status
    )
    SELECT count(*) FILTER (WHERE c.status = 'cancelled'), count(*) FILTER (WHERE c.status = 'in_progress')
      INTO v_cancelled, v_requested
      FROM changed AS c;

    RETURN jsonb_build_object('ok', true, 'workflow_id', fn_job_workflow_cancel.workflow_id,
                              'status', 'cancelled', 'cancelled', v_cancelled,
                              'cancel_requested', v_requested);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_workflow_cancel(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_workflow_cancel(bigint, text, text) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_workflow_cancel(bigint, text, text) IS
    'Cancel a workflow: steps not yet run are cancelled, running steps asked to stop, nothing more is released. → {"ok":true,"workflow_id","status":"cancelled","cancelled":n,"cancel_requested":m}; succeeded or cancelled → {"refused":true,"reason":"already_finished","workflow_id","status"}; unknown → {"refused":true,"reason":"not_found","workflow_id"}. Refuses mot_disabled while workflow.mot.enabled is false. Example: SELECT conveyor.fn_job_workflow_cancel(42, reason => ''wrong record'');';
