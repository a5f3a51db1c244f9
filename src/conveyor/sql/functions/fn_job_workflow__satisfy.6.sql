-- fn_job_workflow__satisfy: one parent of children (step keys of workflow_id) has ended in a way
-- its children may go on from (succeeded, or failed under on_failure continue): each child's
-- pending_parents drops by one, and with release, a child left with none pending and no outcome
-- goes waiting → queued (run_at now). The caller holds the workflow row lock, so the decrements
-- of concurrent parents are serialized and exactly one of them sees a child reach zero: fan-in
-- releases a child once. A child job row another transaction holds (a direct fn_job_cancel of
-- it) is skipped rather than waited for, so no lock cycle can form; fn_job_workflow_refresh
-- releases it if that transaction rolls back. Returns the number of jobs released.
-- Private (no EXECUTE grant): callers are fn_job_workflow__step_end and the replay trigger.
CREATE OR REPLACE FUNCTION conveyor.fn_job_workflow__satisfy(
    workflow_id bigint,
    children    text[],
    release     boolean
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_ready    bigint[];
    v_released integer := 0;
BEGIN
    IF cardinality(fn_job_workflow__satisfy.children) = 0 THEN
        RETURN 0;
    END IF;
    WITH counted AS (
        UPDATE job_workflow_step AS st
           SET pending_parents = st.pending_parents - 1
         WHERE st.workflow_id = fn_job_workflow__satisfy.workflow_id
           AND st.step_key = ANY (fn_job_workflow__satisfy.children)
        RETURNING st.job_id, st.pending_parents, st.outcome
    )
    SELECT array_agg(c.job_id) FILTER (WHERE c.pending_parents = 0 AND c.outcome IS NULL) INTO v_ready
      FROM counted AS c;
    IF fn_job_workflow__satisfy.release AND v_ready IS NOT NULL THEN
        UPDATE job_queue AS jq
           SET status = 'queued', run_at = now()
         WHERE jq.id IN (SELECT j.id FROM job_queue AS j
                          WHERE j.id = ANY (v_ready) AND j.status = 'waiting'
                            FOR UPDATE SKIP LOCKED);
        GET DIAGNOSTICS v_released = ROW_COUNT;
    END IF;
    RETURN v_released;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_workflow__satisfy(bigint, text[], boolean) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job_workflow__satisfy(bigint, text[], boolean) IS
    'Private: count one ended parent for each child step; with release, queue the children left with no parent pending. Returns jobs released.';
