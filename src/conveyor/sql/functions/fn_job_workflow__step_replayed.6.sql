-- fn_job_workflow__step_replayed: trigger function of job_dead_letter_workflow_replay_trg. A dead
-- letter of a workflow step was replayed (fn_job_dead_letter_replay set replayed_job_id): the new
-- job becomes the step's job, the step is open again, and the workflow resumes where it stopped.
-- A failed workflow becomes active again unless another step still fails it (its dead letter is
-- not replayed yet), and its held steps whose parents have all ended are released; a succeeded
-- one (a continue step was replayed) is active until the step ends again. A cancelled workflow
-- stays cancelled: the replayed job is cancelled at once, so nothing of it runs. Done by a
-- trigger so phase 2's replay function stays as it is and plain dead letters pay one null test.
-- Private (no EXECUTE grant; triggers need none).
CREATE OR REPLACE FUNCTION conveyor.fn_job_workflow__step_replayed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_wf     bigint := (NEW.job ->> 'workflow_id')::bigint;
    v_status text;
    v_step   text;
    v_other  text;
BEGIN
    SELECT jw.status INTO v_status FROM job_workflow AS jw WHERE jw.id = v_wf FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE job_workflow_step AS st
       SET job_id = NEW.replayed_job_id, outcome = NULL, finished_at = NULL
     WHERE st.job_id = NEW.job_id AND st.workflow_id = v_wf AND st.outcome = 'failed'
    RETURNING st.step_key INTO v_step;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE job_queue AS jq SET workflow_id = v_wf WHERE jq.id = NEW.replayed_job_id;
    UPDATE job_workflow AS jw SET steps_open = jw.steps_open + 1 WHERE jw.id = v_wf;

    IF v_status = 'cancelled' THEN
        UPDATE job_queue AS jq
           SET status = 'cancelled', finished_at = now(), cancel_requested_at = now(),
               cancel_reason = 'workflow cancelled before the replay'
         WHERE jq.id = NEW.replayed_job_id AND jq.status = 'queued';
        RETURN NULL;
    END IF;
    IF v_status = 'failed' THEN
        SELECT st.step_key INTO v_other
          FROM job_workflow_step AS st
         WHERE st.workflow_id = v_wf AND st.outcome IN ('failed', 'cancelled')
           AND st.on_failure = 'fail_workflow'
         ORDER BY st.finished_at, st.ord
         LIMIT 1;
        IF v_other IS NOT NULL THEN
            UPDATE job_workflow AS jw SET failed_step = v_other WHERE jw.id = v_wf;
            RETURN NULL;
        END IF;
    END IF;
    UPDATE job_workflow AS jw
       SET status = 'active', failed_step = NULL, finished_at = NULL
     WHERE jw.id = v_wf;
    UPDATE job_queue AS jq
       SET status = 'queued', run_at = now()
     WHERE jq.id IN (SELECT j.id
                       FROM job_workflow_step AS st
                       JOIN job_queue AS j ON j.id = st.job_id
                      WHERE st.workflow_id = v_wf AND st.outcome IS NULL AND st.pending_parents = 0
                        AND j.status = 'waiting'
                        FOR UPDATE OF j SKIP LOCKED);
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_workflow__step_replayed() FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job_workflow__step_replayed() IS
    'Private trigger function: a workflow step''s dead letter was replayed → the new job is the step''s job and the workflow resumes.';
