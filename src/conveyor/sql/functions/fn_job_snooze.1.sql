-- fn_job_snooze: the lease holder puts its job back to run later (at now() + seconds) without
-- spending the attempt the claim counted. A job whose cancellation was requested is not queued
-- again: it ends cancelled. A stale token gets lease_lost and changes nothing. Unlike a release,
-- a snooze does not count toward queue.retry.max_releases: the handler chose the wait.
CREATE OR REPLACE FUNCTION conveyor.fn_job_snooze(
    job_id      bigint,
    lease_token uuid,
    seconds     numeric
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

    RETURN fn_job__requeue(
        fn_job_snooze.job_id,
        fn_job_snooze.lease_token,
        now() + make_interval(secs => fn_job_snooze.seconds::double precision),
        false);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_snooze(bigint, uuid, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_snooze(bigint, uuid, numeric) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_snooze(bigint, uuid, numeric) IS
    'Put the leased job back to queued at now() + seconds (0..315576000) without spending the '
    'attempt. → {"ok":true,"job_id","status":"queued","run_at"}; cancellation requested → '
    '{"ok":true,"job_id","status":"cancelled"}; stale token → {"refused":true,"reason":"lease_lost",'
    '"job_id"}. Refuses job_substrate_disabled while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_snooze(42, ''0b6f7a58-3c2e-4d8a-9f51-2f0c8e1d7a10'', seconds => 300)';
