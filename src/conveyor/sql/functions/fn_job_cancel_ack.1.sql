-- fn_job_cancel_ack: the lease holder of a job whose cancellation was requested ends it as
-- cancelled. Like complete, a repeat with the same token is recognised ("already"). A job
-- nobody asked to cancel is refused (cancel_not_requested): complete or fail it instead.
CREATE OR REPLACE FUNCTION conveyor.fn_job_cancel_ack(
    job_id      bigint,
    lease_token uuid
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
    IF fn_job_cancel_ack.job_id IS NULL OR fn_job_cancel_ack.lease_token IS NULL THEN
        RAISE EXCEPTION 'fn_job_cancel_ack: job_id and lease_token are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job_id and lease_token that fn_job_claim returned with the job.';
    END IF;

    UPDATE job_queue AS jq
       SET status = 'cancelled', finished_at = now(), lease_expires_at = NULL
     WHERE jq.id = fn_job_cancel_ack.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job_cancel_ack.lease_token  -- fencing
       AND jq.cancel_requested_at IS NOT NULL;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_cancel_ack.job_id, 'status', 'cancelled');
    END IF;

    SELECT jq.status INTO v_status
      FROM job_queue AS jq
     WHERE jq.id = fn_job_cancel_ack.job_id
       AND jq.lease_token = fn_job_cancel_ack.lease_token;
    IF v_status = 'cancelled' THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_cancel_ack.job_id, 'status', 'cancelled',
                                  'already', true);
    ELSIF v_status = 'in_progress' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'cancel_not_requested',
                                  'job_id', fn_job_cancel_ack.job_id);
    END IF;
    RETURN jsonb_build_object('refused', true, 'reason', 'lease_lost', 'job_id', fn_job_cancel_ack.job_id);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_cancel_ack(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_cancel_ack(bigint, uuid) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_cancel_ack(bigint, uuid) IS
    'End the leased, cancel-requested job as cancelled. → {"ok":true,"job_id","status":"cancelled"} '
    '(a repeat adds "already":true); not requested → {"refused":true,"reason":"cancel_not_requested",'
    '"job_id"}; stale token → {"refused":true,"reason":"lease_lost","job_id"}. Refuses '
    'job_substrate_disabled while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_cancel_ack(42, ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'')';
