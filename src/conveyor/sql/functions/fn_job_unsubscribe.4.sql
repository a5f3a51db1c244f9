-- fn_job_unsubscribe: remove one subscription; fn_job_claim(executor => …) stops claiming those
-- kinds at its next call (jobs it holds already run to the end).
-- Answer: {"ok": true, "executor", "kind_pattern", "removed": bool}.
CREATE OR REPLACE FUNCTION conveyor.fn_job_unsubscribe(
    executor     text,
    kind_pattern text
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_removed boolean;
BEGIN
    IF fn_job_unsubscribe.executor IS NULL OR fn_job_unsubscribe.kind_pattern IS NULL THEN
        RAISE EXCEPTION 'fn_job_unsubscribe: executor and kind_pattern are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name a row of v_job_subscription.';
    END IF;
    DELETE FROM job_subscription AS js
     WHERE js.executor = fn_job_unsubscribe.executor
       AND js.kind_pattern = fn_job_unsubscribe.kind_pattern;
    v_removed := FOUND;
    RETURN jsonb_build_object('ok', true, 'executor', fn_job_unsubscribe.executor,
                              'kind_pattern', fn_job_unsubscribe.kind_pattern, 'removed', v_removed);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_unsubscribe(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_unsubscribe(text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_unsubscribe(text, text) IS
    'Remove the subscription (executor, kind_pattern). Answer {ok, executor, kind_pattern, removed}. Example: SELECT conveyor.fn_job_unsubscribe(''agent'', ''staging.*'')';
