-- fn_job_workflow__step_end: the step whose current job is job_id ended with outcome
-- (succeeded, failed = dead-lettered, cancelled). Runs in the transaction that ended the job
-- (from the job_queue triggers), so a workflow advances at queue speed. Every call first locks
-- the workflow row: all bookkeeping of one workflow is serialized, which is what makes fan-in
-- exactly-once and settlement exact. A job that is no longer its step's current job, or a step
-- that already has an outcome (skipped steps cancelled below, a cancelled workflow's jobs), is
-- ignored, so no end is counted twice.
--
-- What follows from the outcome, unless the workflow was cancelled (then the end is only
-- recorded):
--   succeeded, or failed/cancelled under on_failure continue → the children are satisfied
--     (fn_job_workflow__satisfy), released only while the workflow is active;
--   failed/cancelled under skip_dependents → every step downstream is skipped (its waiting job
--     cancelled) and the rest of the workflow goes on;
--   failed/cancelled under fail_workflow (the default) → the workflow is failed and its queued
--     steps are held (back to waiting; jobs a claim holds right now are left to run), so nothing
--     more starts. Replaying the dead letter resumes it (fn_job_workflow__step_replayed).
-- When no step is left open, an active workflow is succeeded.
-- Private (no EXECUTE grant): callers are the job_queue triggers.
CREATE OR REPLACE FUNCTION conveyor.fn_job_workflow__step_end(
    workflow_id bigint,
    job_id      bigint,
    outcome     text
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_status  text;
    v_step    record;
    v_ended   integer := 1;
    v_skipped bigint[];
    v_satisfy boolean;
BEGIN
    SELECT jw.status INTO v_status
      FROM job_workflow AS jw
     WHERE jw.id = fn_job_workflow__step_end.workflow_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- By job_id alone (its unique index): with "outcome IS NULL" in the WHERE, stale statistics
    -- (a graph just emitted) could pick the open-steps index and scan every open step of the
    -- workflow for each step end, O(n²) over a wide fan-out.
    SELECT st.workflow_id, st.step_key, st.children, st.on_failure, st.children_satisfied, st.outcome
      INTO v_step
      FROM job_workflow_step AS st
     WHERE st.job_id = fn_job_workflow__step_end.job_id;
    IF NOT FOUND OR v_step.outcome IS NOT NULL
       OR v_step.workflow_id <> fn_job_workflow__step_end.workflow_id THEN
        RETURN;
    END IF;
    -- Children are counted once per step (a replayed continue step does not count them again).
    v_satisfy := v_status <> 'cancelled' AND NOT v_step.children_satisfied
                 AND (fn_job_workflow__step_end.outcome = 'succeeded' OR v_step.on_failure = 'continue');
    UPDATE job_workflow_step AS st
       SET outcome = fn_job_workflow__step_end.outcome, finished_at = now(),
           children_satisfied = st.children_satisfied OR v_satisfy
     WHERE st.job_id = fn_job_workflow__step_end.job_id;

    IF v_status = 'cancelled' THEN
        NULL;  -- the workflow is over; the end is recorded and nothing follows from it
    ELSIF fn_job_workflow__step_end.outcome = 'succeeded' OR v_step.on_failure = 'continue' THEN
        IF v_satisfy THEN
            PERFORM fn_job_workflow__satisfy(fn_job_workflow__step_end.workflow_id, v_step.children,
                                             v_status = 'active');
        END IF;
    ELSIF v_step.on_failure = 'skip_dependents' THEN
        WITH RECURSIVE downstream (step_key) AS (
            SELECT unnest(v_step.children)
            UNION
            SELECT unnest(st.children)
              FROM job_workflow_step AS st
              JOIN downstream AS d ON d.step_key = st.step_key
             WHERE st.workflow_id = fn_job_workflow__step_end.workflow_id
        ), skipped AS (
            UPDATE job_workflow_step AS st
               SET outcome = 'skipped', finished_at = now()
              FROM downstream AS d
             WHERE st.workflow_id = fn_job_workflow__step_end.workflow_id
               AND st.step_key = d.step_key
               AND st.outcome IS NULL
            RETURNING st.job_id
        )
        SELECT array_agg(s.job_id) INTO v_skipped FROM skipped AS s;
        v_ended := v_ended + coalesce(cardinality(v_skipped), 0);
        UPDATE job_queue AS jq
           SET status = 'cancelled', finished_at = now(),
               cancel_requested_at = coalesce(jq.cancel_requested_at, now()),
               cancel_reason = coalesce(jq.cancel_reason,
                                        format('skipped: upstream step %s ended %s', v_step.step_key,
                                               fn_job_workflow__step_end.outcome))
         WHERE jq.id = ANY (v_skipped)
           AND jq.status IN ('waiting', 'queued');
    ELSIF v_status = 'active' THEN  -- fail_workflow
        UPDATE job_workflow AS jw
           SET status = 'failed', failed_step = v_step.step_key, finished_at = now()
         WHERE jw.id = fn_job_workflow__step_end.workflow_id;
        UPDATE job_queue AS jq
           SET status = 'waiting'
         WHERE jq.id IN (SELECT j.id
                           FROM job_workflow_step AS st
                           JOIN job_queue AS j ON j.id = st.job_id
                          WHERE st.workflow_id = fn_job_workflow__step_end.workflow_id
                            AND st.outcome IS NULL
                            AND j.status = 'queued'
                            FOR UPDATE OF j SKIP LOCKED);
    END IF;

    UPDATE job_workflow AS jw
       SET steps_open = jw.steps_open - v_ended,
           status = CASE WHEN jw.steps_open - v_ended = 0 AND jw.status = 'active' THEN 'succeeded'
                         ELSE jw.status END,
           finished_at = CASE WHEN jw.steps_open - v_ended = 0 AND jw.status = 'active' THEN now()
                              ELSE jw.finished_at END
     WHERE jw.id = fn_job_workflow__step_end.workflow_id;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_workflow__step_end(bigint, bigint, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job_workflow__step_end(bigint, bigint, text) IS
    'Private: record that a workflow step''s job ended (succeeded/failed/cancelled), apply the step''s failure policy, release children, settle the workflow.';
