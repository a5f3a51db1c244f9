-- fn_job_fail_transient: the lease holder reports a failure worth retrying. With attempts left
-- the job goes back to queued at now() + delay, lease cleared, error kept in last_error. The
-- delay is retry_in_seconds when the worker gives one (it always wins); otherwise
-- fn_job__retry_seconds, the one thing phases change: phase 1's is the fixed
-- queue.retry.base_seconds; phase 2's, once queue.retry.backoff_enabled, is
-- min(cap, base · 2^(attempt-1)) ± jitter (fn_job_backoff_seconds), so run_at stays in
-- [now(), now() + cap · (1 + jitter)] at any attempt. With attempts exhausted (attempts, counted
-- at claim, >= the job's max_attempts, else queue.retry.max_attempts.<kind>, else .default) it
-- moves to job_dead_letter with reason max_attempts_exhausted, full row kept, in the same
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
                  HINT = 'Pass NULL for the configured delay (queue.retry.base_seconds, or phase 2''s backoff once queue.retry.backoff_enabled).';
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

    v_retry := coalesce(v_retry, fn_job__retry_seconds(v_job.attempts));
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
    '"queued","run_at"} (run_at = now() + retry_in_seconds; without it queue.retry.base_seconds, '
    'or with phase 2 once queue.retry.backoff_enabled min(cap, base · 2^(attempt-1)) ± jitter); '
    'exhausted → {"ok":true,"job_id","status":"dead_letter","dead_letter_id"}; cancellation '
    'requested → {"ok":true,"job_id","status":"cancelled"}. error is kept truncated to 2,000 '
    'characters. Stale token → {"refused":true,"reason":"lease_lost","job_id"}. Refuses '
    'job_substrate_disabled while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_fail_transient(42, ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'', error => ''SMTP timeout'')';
