-- fn_job_complete: mark an in-progress job succeeded. Only the current lease holder may: a
-- worker whose lease was reaped presents a stale token, matches no row and gets lease_lost
-- (fencing). The token stays on the row, so repeating a complete whose answer was lost (the
-- commit went through, the connection dropped) is recognised: {"ok":true,…,"already":true}.
-- Success releases the job's idempotency key (the live-key index covers live states only).
CREATE OR REPLACE FUNCTION conveyor.fn_job_complete(
    job_id      bigint,
    lease_token uuid,
    result      jsonb DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_already boolean;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF fn_job_complete.job_id IS NULL OR fn_job_complete.lease_token IS NULL THEN
        RAISE EXCEPTION 'fn_job_complete: job_id and lease_token are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job_id and lease_token that fn_job_claim returned with the job.';
    END IF;

    UPDATE job_queue AS jq
       SET status = 'succeeded',
           result = fn_job_complete.result,
           finished_at = now(),
           lease_expires_at = NULL
     WHERE jq.id = fn_job_complete.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job_complete.lease_token;  -- fencing: a stale token matches none
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_complete.job_id);
    END IF;

    -- A repeat? Looked up by primary key only (no status in the WHERE), so no plan can scan the
    -- finished jobs' partial index instead, however stale the statistics.
    SELECT jq.status = 'succeeded' AND jq.lease_token = fn_job_complete.lease_token INTO v_already
      FROM job_queue AS jq
     WHERE jq.id = fn_job_complete.job_id;
    IF v_already THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_complete.job_id, 'already', true);
    END IF;
    RETURN jsonb_build_object('refused', true, 'reason', 'lease_lost', 'job_id', fn_job_complete.job_id);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_complete(bigint, uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_complete(bigint, uuid, jsonb) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_complete(bigint, uuid, jsonb) IS
    'Mark the job succeeded (storing result) if lease_token is its current lease. → {"ok":true,'
    '"job_id"}; repeated with the token that completed it → {"ok":true,"job_id","already":true}; '
    'otherwise {"refused":true,"reason":"lease_lost","job_id"} and nothing changes. Refuses '
    'job_substrate_disabled while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_complete(42, ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'', result => ''{"sent": true}'')';
