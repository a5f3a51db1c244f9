-- fn_job_cancel: stop a job. Waiting or queued → cancelled at once (its idempotency key is free
-- again). In progress → cancellation requested: the handler learns it from fn_job_extend_lease
-- and ends the job with fn_job_cancel_ack (complete and fail still work). One UPDATE decides on
-- the row's current version, so a claim racing the cancel is seen whichever commits first.
CREATE OR REPLACE FUNCTION conveyor.fn_job_cancel(
    job_id bigint,
    reason text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_status text;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF fn_job_cancel.job_id IS NULL THEN
        RAISE EXCEPTION 'fn_job_cancel: job_id is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job_id that fn_job_enqueue returned.';
    END IF;

    UPDATE job_queue AS jq
       SET status = CASE WHEN jq.status = 'in_progress' THEN 'in_progress' ELSE 'cancelled' END,
           finished_at = CASE WHEN jq.status = 'in_progress' THEN NULL ELSE now() END,
           cancel_requested_at = coalesce(jq.cancel_requested_at, now()),
           cancel_reason = coalesce(jq.cancel_reason, left(fn_job_cancel.reason, 2000))
     WHERE jq.id = fn_job_cancel.job_id
       AND jq.status IN ('waiting', 'queued', 'in_progress')
    RETURNING jq.status INTO v_status;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_cancel.job_id,
                                  'status', CASE v_status WHEN 'in_progress' THEN 'cancel_requested'
                                                          ELSE 'cancelled' END);
    END IF;

    SELECT jq.status INTO v_status FROM job_queue AS jq WHERE jq.id = fn_job_cancel.job_id;
    IF NOT FOUND THEN
        SELECT 'dead_letter' INTO v_status FROM job_dead_letter AS dl WHERE dl.job_id = fn_job_cancel.job_id LIMIT 1;
    END IF;
    IF v_status IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found', 'job_id', fn_job_cancel.job_id);
    END IF;
    RETURN jsonb_build_object('refused', true, 'reason', 'already_finished',
                              'job_id', fn_job_cancel.job_id, 'status', v_status);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_cancel(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_cancel(bigint, text) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_cancel(bigint, text) IS
    'Cancel a job. waiting/queued → {"ok":true,"job_id","status":"cancelled"}; in_progress → '
    '{"ok":true,"job_id","status":"cancel_requested"} (the handler sees it in fn_job_extend_lease); '
    'succeeded/cancelled/dead-lettered → {"refused":true,"reason":"already_finished","job_id",'
    '"status"}; unknown → {"refused":true,"reason":"not_found","job_id"}. reason is kept in '
    'cancel_reason. Refuses job_substrate_disabled while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_cancel(42, reason => ''customer withdrew'')';
