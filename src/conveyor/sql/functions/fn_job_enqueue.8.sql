-- fn_job_enqueue, phase 8 version (phase 8's ddl.down drops it and restores the .1 file): phase
-- 1's enqueue plus concurrency_key (1..255 bytes; NULL = none), the key fn_job_key_limit's caps
-- and rates and a limited queue's fairness apply to. Everything else is the .1 file's: the same
-- checks (fn_job__enqueue_problem), the same INSERT with one more column, the same answers.
CREATE OR REPLACE FUNCTION conveyor.fn_job_enqueue(
    kind            text,
    payload         jsonb       DEFAULT '{}',
    queue           text        DEFAULT NULL,
    priority        integer     DEFAULT NULL,
    run_at          timestamptz DEFAULT NULL,
    idempotency_key text        DEFAULT NULL,
    max_attempts    integer     DEFAULT NULL,
    concurrency_key text        DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
-- ON CONFLICT's index columns cannot be qualified; they name the table's columns, not arguments.
#variable_conflict use_column
DECLARE
    v_payload jsonb := coalesce(fn_job_enqueue.payload, '{}');
    v_problem text[];
    v_job_id  bigint;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;

    v_problem := fn_job__enqueue_problem(
        fn_job_enqueue.kind, v_payload, fn_job_enqueue.queue, fn_job_enqueue.priority,
        fn_job_enqueue.run_at, fn_job_enqueue.idempotency_key, fn_job_enqueue.max_attempts,
        fn_job__config_number('queue.payload.max_bytes', 262144)::integer,
        fn_job__config_number('queue.payload.max_depth', 32)::integer);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'fn_job_enqueue: % %', v_problem[1], v_problem[2]
            USING ERRCODE = 'invalid_parameter_value', HINT = v_problem[3];
    END IF;
    IF fn_job_enqueue.concurrency_key IS NOT NULL THEN
        PERFORM fn_job__limit_target('fn_job_enqueue', NULL, false, fn_job_enqueue.concurrency_key);
    END IF;

    -- Bounded retry: the only way round is a live twin that finished between the INSERT that
    -- yielded to it and the SELECT that looked for it; the next INSERT then succeeds.
    FOR v_attempt IN 1..5 LOOP
        INSERT INTO job_queue AS jq
               (queue, kind, payload, priority, status, run_at, idempotency_key, max_attempts,
                concurrency_key)
        VALUES (coalesce(fn_job_enqueue.queue, 'default'), fn_job_enqueue.kind, v_payload,
                coalesce(fn_job_enqueue.priority, 0), 'queued',
                coalesce(fn_job_enqueue.run_at, now()), fn_job_enqueue.idempotency_key,
                fn_job_enqueue.max_attempts, fn_job_enqueue.concurrency_key)
        ON CONFLICT (idempotency_key)
           WHERE idempotency_key IS NOT NULL AND status IN ('waiting', 'queued', 'in_progress')
           DO NOTHING
        RETURNING jq.id INTO v_job_id;
        IF v_job_id IS NOT NULL THEN
            RETURN jsonb_build_object('ok', true, 'job_id', v_job_id, 'created', true);
        END IF;

        SELECT jq.id INTO v_job_id
          FROM job_queue AS jq
         WHERE jq.idempotency_key = fn_job_enqueue.idempotency_key
           AND jq.status IN ('waiting', 'queued', 'in_progress');
        IF v_job_id IS NOT NULL THEN
            RETURN jsonb_build_object('ok', true, 'job_id', v_job_id, 'created', false);
        END IF;
    END LOOP;

    RAISE EXCEPTION 'fn_job_enqueue: idempotency_key % kept changing hands; giving up',
                    quote_literal(fn_job_enqueue.idempotency_key)
        USING ERRCODE = 'serialization_failure',
              HINT = 'Retry the transaction.';
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_enqueue(text, jsonb, text, integer, timestamptz, text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_enqueue(text, jsonb, text, integer, timestamptz, text, integer, text)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_enqueue(text, jsonb, text, integer, timestamptz, text, integer, text) IS
    'Enqueue one job in the caller''s transaction. → {"ok":true,"job_id":N,"created":true}; with an '
    'idempotency_key a live job holds → {"ok":true,"job_id":<that job>,"created":false}. Limits: '
    'kind 1..128 bytes ^[A-Za-z0-9][A-Za-z0-9_.:/-]*$; queue ≤ 63 bytes ^[a-z0-9][a-z0-9_.-]*$ '
    '(NULL = default); payload a JSON object ≤ queue.payload.max_bytes (jsonb size) and ≤ '
    'queue.payload.max_depth levels (NULL = {}); priority -1000..1000 (NULL = 0, higher first); '
    'run_at finite, ≤ 10 years ahead (NULL = now()); idempotency_key 1..255 bytes; max_attempts '
    '1..1000 (NULL = config); concurrency_key 1..255 bytes (phase 8: the key of fn_job_key_limit). Invalid input → SQLSTATE 22023 naming the argument. Refuses '
    'job_substrate_disabled while queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_enqueue(''email.send'', ''{"to": "a@example.com"}'', queue => ''email'')';
