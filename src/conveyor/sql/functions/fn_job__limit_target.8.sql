-- fn_job__limit_target: private helper of fn_job_queue_limit, fn_job_key_limit and fn_job_enqueue
-- (phase 8): check what a limit is set on, naming the public function fn (22023). With
-- queue_required, queue must be a queue name; the rule is fn_job__enqueue_problem's (the one place
-- that knows a valid job), asked about the queue alone. A concurrency_key, when given, is 1 to
-- 255 bytes (job_queue_concurrency_key_check holds the same bound for the rows themselves).
CREATE OR REPLACE FUNCTION conveyor.fn_job__limit_target(
    fn              text,
    queue           text,
    queue_required  boolean,
    concurrency_key text
) RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    IF queue_required AND (queue IS NULL OR (fn_job__enqueue_problem(
           'limit'::text, '{}'::jsonb, queue, NULL::numeric, NULL::timestamptz, NULL::text,
           NULL::numeric, 2147483647, 64))[1] = 'queue') THEN
        RAISE EXCEPTION '%: queue % is not a queue name', fn, coalesce(quote_literal(left(queue, 64)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A queue name is ≤ 63 bytes of ^[a-z0-9][a-z0-9_.-]*$, as in fn_job_enqueue.';
    END IF;
    IF concurrency_key = '' OR octet_length(concurrency_key) > 255 THEN
        RAISE EXCEPTION '%: concurrency_key must be 1 to 255 bytes', fn
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the key jobs are enqueued with (a tenant, an account, a mailbox), or NULL for none.';
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__limit_target(text, text, boolean, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__limit_target(text, text, boolean, text) IS
    'Private: check the queue name (when required) and the concurrency_key a limit or a job names, for fn_job_queue_limit / fn_job_key_limit / fn_job_enqueue (SQLSTATE 22023).';
