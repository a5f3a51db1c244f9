-- fn_job_release: the lease holder gives its job back unstarted (graceful shutdown): queued
-- again at once, keeping its run_at and so its place in line, without spending the attempt. A
-- job whose cancellation was requested is not queued again: it ends cancelled. A stale token
-- gets lease_lost and changes nothing. The release counts in releases: past
-- queue.retry.max_releases the job is dead-lettered (max_releases_exceeded) instead.
CREATE OR REPLACE FUNCTION conveyor.fn_job_release(
    job_id      bigint,
    lease_token uuid
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF fn_job_release.job_id IS NULL OR fn_job_release.lease_token IS NULL THEN
        RAISE EXCEPTION 'fn_job_release: job_id and lease_token are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job_id and lease_token that fn_job_claim returned with the job.';
    END IF;

    RETURN fn_job__requeue(fn_job_release.job_id, fn_job_release.lease_token, NULL, true);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_release(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_release(bigint, uuid) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_release(bigint, uuid) IS
    'Give the leased job back: queued again now (run_at kept), attempt not spent. → {"ok":true,'
    '"job_id","status":"queued","run_at"}; cancellation requested → {"ok":true,"job_id","status":'
    '"cancelled"}; released more than queue.retry.max_releases (100) times → {"ok":true,'
    '"job_id","status":"dead_letter","reason":"max_releases_exceeded","dead_letter_id"}; '
    'stale token → {"refused":true,"reason":"lease_lost","job_id"}. Refuses '
    'job_substrate_disabled while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_release(42, ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'')';
