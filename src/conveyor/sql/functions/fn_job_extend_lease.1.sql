-- fn_job_extend_lease: the lease holder keeps its job: lease_expires_at becomes
-- clock_timestamp() + lease_seconds (clock_timestamp, not now(): the renewal loop may sit in a
-- long transaction). The answer says whether cancellation was requested, so the handler can stop
-- cooperatively. A stale token gets lease_lost: the job was reaped and the handler must stop.
CREATE OR REPLACE FUNCTION conveyor.fn_job_extend_lease(
    job_id        bigint,
    lease_token   uuid,
    lease_seconds integer DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_lease            integer := fn_job_extend_lease.lease_seconds;
    v_expires_at       timestamptz;
    v_cancel_requested boolean;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF fn_job_extend_lease.job_id IS NULL OR fn_job_extend_lease.lease_token IS NULL THEN
        RAISE EXCEPTION 'fn_job_extend_lease: job_id and lease_token are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job_id and lease_token that fn_job_claim returned with the job.';
    END IF;
    IF v_lease IS NULL THEN
        v_lease := least(greatest(fn_job__config_number('queue.lease.default_seconds', 60), 1), 86400);
    ELSIF v_lease NOT BETWEEN 1 AND 86400 THEN
        RAISE EXCEPTION 'fn_job_extend_lease: lease_seconds is %; it must be from 1 to 86400', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for queue.lease.default_seconds and extend again before it runs out.';
    END IF;

    UPDATE job_queue AS jq
       SET lease_expires_at = clock_timestamp() + make_interval(secs => v_lease)
     WHERE jq.id = fn_job_extend_lease.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job_extend_lease.lease_token  -- fencing
    RETURNING jq.lease_expires_at, jq.cancel_requested_at IS NOT NULL
         INTO v_expires_at, v_cancel_requested;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'lease_lost', 'job_id', fn_job_extend_lease.job_id);
    END IF;
    RETURN jsonb_build_object('ok', true, 'job_id', fn_job_extend_lease.job_id,
                              'lease_expires_at', v_expires_at, 'cancel_requested', v_cancel_requested);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_extend_lease(bigint, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_extend_lease(bigint, uuid, integer) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_extend_lease(bigint, uuid, integer) IS
    'Renew the lease: lease_expires_at = clock_timestamp() + lease_seconds (1..86400, default '
    'queue.lease.default_seconds). → {"ok":true,"job_id","lease_expires_at","cancel_requested"}; '
    'stale token → {"refused":true,"reason":"lease_lost","job_id"}. Refuses job_substrate_disabled '
    'while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_extend_lease(42, ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'', lease_seconds => 120)';
