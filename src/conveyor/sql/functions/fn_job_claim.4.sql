-- fn_job_claim, phase 4 version (phase 4's ddl.down drops it and restores the .1 file): phase 1's
-- claim plus executor. With an executor (an executor_kind), only kinds it is subscribed to in
-- job_subscription (exact kinds and <prefix>.* patterns, read once per call into two arrays) are
-- claimed, on top of the kinds filter; an executor with no subscription claims nothing. Without
-- one (NULL) the claim is exactly the phase-1 claim, so existing workers keep working. The
-- checks and the claim statement are the shared private helpers of both versions
-- (fn_job__claim_validate, fn_job__claim_rows): this file holds only what phase 4 adds. The
-- subscription test is one more filter on the same per-queue index walk there: unsubscribed
-- kinds are stepped over like kinds outside the kinds argument. Kept in common with the .1 file:
-- the signature, header, gate check and grants (a version is a whole CREATE; see ../README.md).
CREATE OR REPLACE FUNCTION conveyor.fn_job_claim(
    worker        text,
    queues        text[]  DEFAULT NULL,
    kinds         text[]  DEFAULT NULL,
    batch         integer DEFAULT 1,
    lease_seconds integer DEFAULT NULL,
    executor      text    DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_queues text[]  := coalesce(fn_job_claim.queues, ARRAY['default']);
    v_batch  integer := coalesce(fn_job_claim.batch, 1);
    v_lease  integer;
    v_exact  text[];
    v_prefix text[];
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;

    v_lease := fn_job__claim_validate(fn_job_claim.worker, v_queues, fn_job_claim.kinds, v_batch,
                                      fn_job_claim.lease_seconds);

    IF fn_job_claim.executor IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM executor_kind AS ek WHERE ek.executor = fn_job_claim.executor) THEN
            RAISE EXCEPTION 'fn_job_claim: executor % is not an executor',
                            quote_literal(left(fn_job_claim.executor, 64))
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use one of executor_kind (agent, codex, dot, external_worker, operator), or NULL.';
        END IF;
        SELECT coalesce(array_agg(js.kind_pattern) FILTER (WHERE js.kind_prefix IS NULL), '{}'),
               coalesce(array_agg(js.kind_prefix) FILTER (WHERE js.kind_prefix IS NOT NULL), '{}')
          INTO v_exact, v_prefix
          FROM job_subscription AS js
         WHERE js.executor = fn_job_claim.executor;
        IF cardinality(v_exact) = 0 AND cardinality(v_prefix) = 0 THEN
            RETURN jsonb_build_object('ok', true, 'jobs', '[]'::jsonb, 'subscribed', false);
        END IF;
    END IF;

    RETURN fn_job__claim_rows(fn_job_claim.worker, v_queues, fn_job_claim.kinds, v_batch, v_lease,
                              v_exact, v_prefix);  -- both NULL without an executor
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer, text)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer, text) IS
    'Lease up to batch (1..1000, default 1) ready jobs from queues (default {default}), optionally '
    'only of kinds, for lease_seconds (1..86400, default queue.lease.default_seconds). → '
    '{"ok":true,"jobs":[{"job_id","queue","kind","payload","priority","attempts","max_attempts",'
    '"lease_token","lease_expires_at","run_at","created_at"}, …]} ordered by priority DESC, run_at, '
    'id; jobs is [] when nothing is ready. executor (phase 4, an executor_kind; NULL = any kind): '
    'only kinds it is subscribed to in job_subscription; with no subscription '
    '{"ok":true,"jobs":[],"subscribed":false}; unknown executor → SQLSTATE 22023. Refuses '
    'job_substrate_disabled while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_claim(''host1:4242'', queues => ARRAY[''email''], batch => 10)';
