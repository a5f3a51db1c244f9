-- fn_job_subscribe: let executor claim jobs of kind_pattern (a kind, or <prefix>.* for every kind
-- starting with <prefix>.) through fn_job_claim(executor => …). Idempotent. Not gated.
-- Answer: {"ok": true, "executor", "kind_pattern", "created": bool}.
CREATE OR REPLACE FUNCTION conveyor.fn_job_subscribe(
    executor     text,
    kind_pattern text,
    created_by   text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_created boolean;
BEGIN
    IF fn_job_subscribe.executor IS NULL OR NOT EXISTS (
        SELECT 1 FROM executor_kind AS ek WHERE ek.executor = fn_job_subscribe.executor
    ) THEN
        RAISE EXCEPTION 'fn_job_subscribe: executor % is not an executor',
                        quote_nullable(left(fn_job_subscribe.executor, 64))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use one of executor_kind: agent, codex, dot, external_worker, operator.';
    END IF;
    IF fn_job_subscribe.kind_pattern IS NULL OR octet_length(fn_job_subscribe.kind_pattern) > 130
       OR fn_job_subscribe.kind_pattern !~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]*(\.\*)?$' THEN
        RAISE EXCEPTION 'fn_job_subscribe: kind_pattern % is neither a job kind nor <prefix>.*',
                        quote_nullable(left(fn_job_subscribe.kind_pattern, 64))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name a job kind (staging.cut) or a prefix pattern (staging.*).';
    END IF;
    INSERT INTO job_subscription AS js (executor, kind_pattern, created_by)
    VALUES (fn_job_subscribe.executor, fn_job_subscribe.kind_pattern,
            coalesce(nullif(fn_job_subscribe.created_by, ''), session_user))
    ON CONFLICT ON CONSTRAINT job_subscription_pkey DO NOTHING;
    v_created := FOUND;
    RETURN jsonb_build_object('ok', true, 'executor', fn_job_subscribe.executor,
                              'kind_pattern', fn_job_subscribe.kind_pattern, 'created', v_created);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_subscribe(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_subscribe(text, text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_subscribe(text, text, text) IS
    'Subscribe executor (an executor_kind) to kind_pattern (a job kind or <prefix>.*): fn_job_claim(executor => …) then claims those kinds. Idempotent. Bad input: SQLSTATE 22023. Answer {ok, executor, kind_pattern, created}. Example: SELECT conveyor.fn_job_subscribe(''agent'', ''staging.*'')';
