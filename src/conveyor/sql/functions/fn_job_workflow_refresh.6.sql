-- fn_job_workflow_refresh: the workflow tick (run by the orchestrator's round and `conveyor
-- tick`), the safety net behind the release that step ends do in their own transaction.
-- Idempotent, and it never waits for a lock: workflow rows and job rows another transaction
-- holds are skipped (SKIP LOCKED) and picked up by the next round, so it can form no lock cycle
-- with a completing step. One round:
--   released         steps of active workflows whose parents have all ended but whose job is
--                    still waiting (a release skipped because the row was locked) → queued;
--   timed_out        running steps past their template's timeout_seconds (counted from the
--                    claim) are asked to stop, as fn_job_cancel would (the handler acks; the step
--                    then ends cancelled and its failure policy applies);
--   cancelled,       leftovers of cancelled workflows (a job a claim held while the workflow was
--   cancel_requested cancelled): not run yet → cancelled; running → asked to stop;
--   settled          active workflows with no open step (recounted from the steps) → succeeded.
CREATE OR REPLACE FUNCTION conveyor.fn_job_workflow_refresh()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_released  integer;
    v_timed_out integer;
    v_cancelled integer;
    v_requested integer;
    v_settled   integer;
BEGIN
    IF NOT fn_config_enabled('workflow.mot.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'mot_disabled',
                                  'flag', 'workflow.mot.enabled');
    END IF;

    WITH stuck AS (
        SELECT st.workflow_id, st.job_id
          FROM job_workflow_step AS st
          JOIN job_queue AS j ON j.id = st.job_id
         WHERE st.outcome IS NULL AND st.pending_parents = 0 AND j.status = 'waiting'
    ), locked AS (
        SELECT jw.id
          FROM job_workflow AS jw
         WHERE jw.id IN (SELECT s.workflow_id FROM stuck AS s) AND jw.status = 'active'
           FOR NO KEY UPDATE SKIP LOCKED
    )
    UPDATE job_queue AS jq
       SET status = 'queued', run_at = now()
     WHERE jq.id IN (SELECT j.id
                       FROM stuck AS s
                       JOIN locked AS l ON l.id = s.workflow_id
                       JOIN job_queue AS j ON j.id = s.job_id
                      WHERE j.status = 'waiting'
                        FOR UPDATE OF j SKIP LOCKED);
    GET DIAGNOSTICS v_released = ROW_COUNT;

    UPDATE job_queue AS jq
       SET cancel_requested_at = now(),
           cancel_reason = coalesce(jq.cancel_reason, 'timeout: the step ran longer than its timeout_seconds')
     WHERE jq.id IN (SELECT j.id
                       FROM job_workflow_step AS st
                       JOIN job_queue AS j ON j.id = st.job_id
                      WHERE st.outcome IS NULL AND st.timeout_seconds IS NOT NULL
                        AND j.status = 'in_progress' AND j.cancel_requested_at IS NULL
                        AND j.started_at + make_interval(secs => st.timeout_seconds) < now()
                        FOR UPDATE OF j SKIP LOCKED);
    GET DIAGNOSTICS v_timed_out = ROW_COUNT;

    WITH leftover AS (
        SELECT j.id
          FROM job_workflow AS jw
          JOIN job_workflow_step AS st ON st.workflow_id = jw.id
          JOIN job_queue AS j ON j.id = st.job_id
         WHERE jw.status = 'cancelled' AND jw.steps_open > 0 AND st.outcome IS NULL
           AND (j.status IN ('waiting', 'queued')
                OR (j.status = 'in_progress' AND j.cancel_requested_at IS NULL))
           FOR UPDATE OF j SKIP LOCKED
    ), changed AS (
        UPDATE job_queue AS jq
           SET status = CASE WHEN jq.status = 'in_progress' THEN 'in_progress' ELSE 'cancelled' END,
               finished_at = CASE WHEN jq.status = 'in_progress' THEN NULL ELSE now() END,
               cancel_requested_at = coalesce(jq.cancel_requested_at, now()),
               cancel_reason = coalesce(jq.cancel_reason, 'workflow cancelled')
          FROM leftover AS l
         WHERE jq.id = l.id
        RETURNING jq.status
    )
    SELECT count(*) FILTER (WHERE c.status = 'cancelled'), count(*) FILTER (WHERE c.status = 'in_progress')
      INTO v_cancelled, v_requested
      FROM changed AS c;

    WITH done AS (
        SELECT jw.id
          FROM job_workflow AS jw
         WHERE jw.status = 'active'
           AND NOT EXISTS (SELECT 1 FROM job_workflow_step AS st
                            WHERE st.workflow_id = jw.id AND st.outcome IS NULL)
           FOR NO KEY UPDATE SKIP LOCKED
    )
    UPDATE job_workflow AS jw
       SET status = 'succeeded', steps_open = 0, finished_at = now()
      FROM done AS d
     WHERE jw.id = d.id;
    GET DIAGNOSTICS v_settled = ROW_COUNT;

    RETURN jsonb_build_object('ok', true, 'released', v_released, 'timed_out', v_timed_out,
                              'cancelled', v_cancelled, 'cancel_requested', v_requested,
                              'settled', v_settled);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_workflow_refresh() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_workflow_refresh() TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_workflow_refresh() IS
    'Workflow tick (safety net, idempotent, never waits for a lock): release steps left waiting with no parent pending, ask steps past timeout_seconds to stop, finish leftovers of cancelled workflows, settle active workflows with no open step. → {"ok":true,"released","timed_out","cancelled","cancel_requested","settled"}. Refuses mot_disabled while workflow.mot.enabled is false. Example: SELECT conveyor.fn_job_workflow_refresh();';
