-- fn_job_fail_permanent: the lease holder reports a failure that retrying cannot fix; the job
-- moves to job_dead_letter (reason permanent_failure, full row kept) in this transaction,
-- whatever its attempts. A stale token gets lease_lost and changes nothing.
CREATE OR REPLACE FUNCTION conveyor.fn_job_fail_permanent(
    job_id      bigint,
    lease_token uuid,
    error       text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_dead_letter_id bigint;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF fn_job_fail_permanent.job_id IS NULL OR fn_job_fail_permanent.lease_token IS NULL THEN
        RAISE EXCEPTION 'fn_job_fail_permanent: job_id and lease_token are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job_id and lease_token that fn_job_claim returned with the job.';
    END IF;

    v_dead_letter_id := fn_job__dead_letter(fn_job_fail_permanent.job_id, fn_job_fail_permanent.lease_token,
                                            'permanent_failure', fn_job_fail_permanent.error);
    IF v_dead_letter_id IS NULL THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'lease_lost', 'job_id', fn_job_fail_permanent.job_id);
    END IF;
    RETURN jsonb_build_object('ok', true, 'job_id', fn_job_fail_permanent.job_id,
                              'status', 'dead_letter', 'dead_letter_id', v_dead_letter_id);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_fail_permanent(bigint, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_fail_permanent(bigint, uuid, text) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_fail_permanent(bigint, uuid, text) IS
    'Move the leased job to job_dead_letter with reason permanent_failure (error truncated to '
    '2,000 characters). → {"ok":true,"job_id","status":"dead_letter","dead_letter_id"}; stale token '
    '→ {"refused":true,"reason":"lease_lost","job_id"}. Refuses job_substrate_disabled while '
    'queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_fail_permanent(42, ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'', error => ''invalid address'')';
