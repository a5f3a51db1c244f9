-- fn_job_claim: lease up to batch ready jobs to worker, in one statement. Order: priority DESC,
-- run_at, id across all the given queues. Each job gets attempts + 1 (counted at claim, so a job
-- that kills its worker still runs out of attempts), a new lease_token and
-- lease_expires_at = now() + lease. Rows other sessions hold are skipped (FOR UPDATE SKIP LOCKED),
-- so concurrent workers never get the same job; paused queues are left out. The gate is checked
-- here; the argument checks and the claim statement (its plan is described there) are the
-- private helpers fn_job__claim_validate and fn_job__claim_rows, shared with the phase-4 version.
CREATE OR REPLACE FUNCTION conveyor.fn_job_claim(
    worker        text,
    queues        text[]  DEFAULT NULL,
    kinds         text[]  DEFAULT NULL,
    batch         integer DEFAULT 1,
    lease_seconds integer DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_queues text[]  := coalesce(fn_job_claim.queues, ARRAY['default']);
    v_batch  integer := coalesce(fn_job_claim.batch, 1);
    v_lease  integer;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;

    v_lease := fn_job__claim_validate(fn_job_claim.worker, v_queues, fn_job_claim.kinds, v_batch,
                                      fn_job_claim.lease_seconds);

    RETURN fn_job__claim_rows(fn_job_claim.worker, v_queues, fn_job_claim.kinds, v_batch, v_lease,
                              NULL, NULL);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer) IS
    'Lease up to batch (1..1000, default 1) ready jobs from queues (default {default}), optionally '
    'only of kinds, for lease_seconds (1..86400, default queue.lease.default_seconds). → '
    '{"ok":true,"jobs":[{"job_id","queue","kind","payload","priority","attempts","max_attempts",'
    '"lease_token","lease_expires_at","run_at","created_at"}, …]} ordered by priority DESC, run_at, '
    'id; jobs is [] when nothing is ready. Refuses job_substrate_disabled while '
    'queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_claim(''host1:4242'', queues => ARRAY[''email''], batch => 10)';
