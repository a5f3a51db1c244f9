-- fn_job_snooze: the lease holder puts its job back to run later (at now() + seconds) without
-- spending the attempt the claim counted. A job whose cancellation was requested is not queued
-- again: it ends cancelled. A stale token gets lease_lost and changes nothing.
CREATE OR REPLACE FUNCTION conveyor.fn_job_snooze(
    job_id      bigint,
    lease_token uuid,
    seconds     numeric
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
    IF fn_job_snooze.job_id IS NULL OR fn_job_snooze.lease_token IS NULL THEN
        RAISE EXCEPTION 'fn_job_snooze: job_id and lease_token are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job_id and lease_token that fn_job_claim returned with the job.';
    END IF;
    IF fn_job_snooze.seconds IS NULL OR fn_job_snooze.seconds < 0 OR fn_job_snooze.seconds > 315576000 THEN
        RAISE EXCEPTION 'fn_job_snooze: seconds is %; it must be from 0 to 315576000 (10 years)',
                        coalesce(fn_job_snooze.seconds::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass how long to wait before the job may run again; use fn_job_release for 0.';
    END IF;

    UPDATE job_queue AS jq
       SET status = 'queued',
           run_at = now() + make_interval(secs => fn_job_snooze.seconds::double precision),
           attempts = greatest(jq.attempts - 1, 0),  -- a snooze is not an attempt
           lease_token = NULL,
           leased_by = NULL,
           lease_expires_at = NULL
     WHERE jq.id = fn_job_snooze.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job_snooze.lease_token  -- fencing
       AND jq.cancel_requested_at IS NULL
    RETURNING jq.run_at INTO v_run_at;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_snooze.job_id, 'status', 'queued', 'run_at', v_run_at);
    END IF;

    UPDATE job_queue AS jq
       SET status = 'cancelled', finished_at = now(), lease_expires_at = NULL
     WHERE jq.id = fn_job_snooze.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job_snooze.lease_token
       AND jq.cancel_requested_at IS NOT NULL;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_snooze.job_id, 'status', 'cancelled');
    END IF;
    RETURN jsonb_build_object('refused', true, 'reason', 'lease_lost', 'job_id', fn_job_snooze.job_id);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_snooze(bigint, uuid, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_snooze(bigint, uuid, numeric) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_snooze(bigint, uuid, numeric) IS
    'Put the leased job back to queued at now() + seconds (0..315576000) without spending the '
    'attempt. → {"ok":true,"job_id","status":"queued","run_at"}; cancellation requested → '
    '{"ok":true,"job_id","status":"cancelled"}; stale token → {"refused":true,"reason":"lease_lost",'
    '"job_id"}. Refuses job_substrate_disabled while queue.job_substrate.enabled is false.';
