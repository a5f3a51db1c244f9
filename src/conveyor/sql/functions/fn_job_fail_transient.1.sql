-- fn_job_fail_transient (phase 1 version; phase 2 replaces this file with backoff + jitter):
-- the lease holder reports a failure worth retrying. With attempts left the job goes back to
-- queued at now() + retry_in_seconds (default queue.retry.base_seconds), lease cleared, error
-- kept in last_error. With attempts exhausted (attempts, counted at claim, >= the resolved
-- max_attempts) it moves to job_dead_letter with reason max_attempts_exhausted in the same
-- transaction. A job whose cancellation was requested is not queued again: it ends cancelled.
-- A stale token gets lease_lost and changes nothing.
CREATE OR REPLACE FUNCTION conveyor.fn_job_fail_transient(
    job_id           bigint,
    lease_token      uuid,
    error            text    DEFAULT NULL,
    retry_in_seconds numeric DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_error          text := left(fn_job_fail_transient.error, 2000);
    v_retry          numeric := fn_job_fail_transient.retry_in_seconds;
    v_job            record;
    v_run_at         timestamptz;
    v_dead_letter_id bigint;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF fn_job_fail_transient.job_id IS NULL OR fn_job_fail_transient.lease_token IS NULL THEN
        RAISE EXCEPTION 'fn_job_fail_transient: job_id and lease_token are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job_id and lease_token that fn_job_claim returned with the job.';
    END IF;
    IF v_retry IS NOT NULL AND (v_retry < 0 OR v_retry > 315576000 OR v_retry = 'NaN') THEN
        RAISE EXCEPTION 'fn_job_fail_transient: retry_in_seconds is %; it must be from 0 to 315576000 (10 years)', v_retry
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for queue.retry.base_seconds.';
    END IF;

    SELECT jq.kind, jq.attempts, jq.max_attempts, jq.cancel_requested_at INTO v_job
      FROM job_queue AS jq
     WHERE jq.id = fn_job_fail_transient.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job_fail_transient.lease_token  -- fencing
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'lease_lost', 'job_id', fn_job_fail_transient.job_id);
    END IF;

    IF v_job.cancel_requested_at IS NOT NULL THEN
        UPDATE job_queue AS jq
           SET status = 'cancelled', finished_at = now(), lease_expires_at = NULL, last_error = v_error
         WHERE jq.id = fn_job_fail_transient.job_id;
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_fail_transient.job_id, 'status', 'cancelled');
    END IF;

    IF v_job.attempts >= fn_job__max_attempts(v_job.kind, v_job.max_attempts) THEN
        v_dead_letter_id := fn_job__dead_letter(fn_job_fail_transient.job_id, fn_job_fail_transient.lease_token,
                                                'max_attempts_exhausted', v_error);
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job_fail_transient.job_id,
                                  'status', 'dead_letter', 'dead_letter_id', v_dead_letter_id);
    END IF;

    v_retry := coalesce(v_retry, least(greatest(fn_job__config_number('queue.retry.base_seconds', 1), 0), 315576000));
    UPDATE job_queue AS jq
       SET status = 'queued',
           run_at = now() + make_interval(secs => v_retry::double precision),
           lease_token = NULL,
           leased_by = NULL,
           lease_expires_at = NULL,
           last_error = v_error
     WHERE jq.id = fn_job_fail_transient.job_id
    RETURNING jq.run_at INTO v_run_at;
    RETURN jsonb_build_object('ok', true, 'job_id', fn_job_fail_transient.job_id,
                              'status', 'queued', 'run_at', v_run_at);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_fail_transient(bigint, uuid, text, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_fail_transient(bigint, uuid, text, numeric) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_fail_transient(bigint, uuid, text, numeric) IS
    'Report a retryable failure of the leased job. Attempts left → {"ok":true,"job_id","status":'
    '"queued","run_at"} (run_at = now() + retry_in_seconds, default queue.retry.base_seconds); '
    'exhausted → {"ok":true,"job_id","status":"dead_letter","dead_letter_id"}; cancellation '
    'requested → {"ok":true,"job_id","status":"cancelled"}. error is kept truncated to 2,000 '
    'characters. Stale token → {"refused":true,"reason":"lease_lost","job_id"}. Refuses '
    'job_substrate_disabled while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_fail_transient(42, ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'', error => ''SMTP timeout'')';
