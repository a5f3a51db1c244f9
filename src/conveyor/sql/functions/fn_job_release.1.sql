-- fn_job_release: the lease holder gives its job back unstarted (graceful shutdown): queued
-- again at once, keeping its run_at and so its place in line, without spending the attempt. A
-- job whose cancellation was requested is not queued again: it ends cancelled. A stale token
-- gets lease_lost and changes nothing.
CREATE OR REPLACE FUNCTION conveyor.fn_job_release(
    job_id      bigint,
    lease_token uuid
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_run_at timestamptz;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled');
    END IF;
    IF fn_job_release.job_id IS NULL OR fn_job_release.lease_token IS NULL THEN
        RAISE EXCEPTION 'fn_job_release: job_id and lease_token are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job_id and lease_token that fn_job_claim returned with the job.';
    END IF;

    UPDATE job_queue AS jq
       SET status = 'queued',
           attempts = greatest(jq.attempts - 1, 0),  -- the job did not run: not an attempt
           lease_token = NULL,
           leased_by = NULL,
           lease_expires_at = NULL
     WHERE jq.id = fn_job_release.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job_release.lease_token  -- fencing
       AND jq.cancel_requested_at IS NULL
    RETURNING jq.run_at INTO v_run_at;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_release.job_id, 'status', 'queued', 'run_at', v_run_at);
    END IF;

    UPDATE job_queue AS jq
       SET status = 'cancelled', finished_at = now(), lease_expires_at = NULL
     WHERE jq.id = fn_job_release.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job_release.lease_token
       AND jq.cancel_requested_at IS NOT NULL;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_release.job_id, 'status', 'cancelled');
    END IF;
    RETURN jsonb_build_object('refused', true, 'reason', 'lease_lost', 'job_id', fn_job_release.job_id);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_release(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_release(bigint, uuid) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_release(bigint, uuid) IS
    'Give the leased job back: queued again now (run_at kept), attempt not spent. → {"ok":true,'
    '"job_id","status":"queued","run_at"}; cancellation requested → {"ok":true,"job_id","status":'
    '"cancelled"}; stale token → {"refused":true,"reason":"lease_lost","job_id"}. Refuses '
    'job_substrate_disabled while queue.job_substrate.enabled is false.';
