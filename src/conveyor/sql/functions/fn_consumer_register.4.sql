-- fn_consumer_register: create or replace the consumer_registry row (consumer, event_pattern).
-- Registering an existing pair replaces its action and fields and enables it again. Everything
-- is validated before the write (fn_consumer__problem). Not gated: consumers may be set up before
-- queue.dispatch.enabled is switched on.
-- Answer: {"ok": true, "registry_id", "consumer", "event_pattern", "action", "created": bool}.
CREATE OR REPLACE FUNCTION conveyor.fn_consumer_register(
    consumer        text,
    event_pattern   text,
    action          text,
    job_kind        text         DEFAULT NULL,
    job_queue       text         DEFAULT NULL,
    job_executor    text         DEFAULT NULL,
    job_priority    integer      DEFAULT NULL,
    payload_mapping jsonb        DEFAULT NULL,
    target          regprocedure DEFAULT NULL,
    created_by      text         DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_problem text[];
    v_id      bigint;
    v_created boolean;
BEGIN
    v_problem := fn_consumer__problem(
        fn_consumer_register.consumer, fn_consumer_register.event_pattern,
        fn_consumer_register.action, fn_consumer_register.job_kind, fn_consumer_register.job_queue,
        fn_consumer_register.job_executor, fn_consumer_register.job_priority,
        fn_consumer_register.payload_mapping, fn_consumer_register.target);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'fn_consumer_register: % %', v_problem[1], v_problem[2]
            USING ERRCODE = 'invalid_parameter_value', HINT = v_problem[3];
    END IF;

    INSERT INTO consumer_registry AS cr
           (consumer, event_pattern, action, job_kind, job_queue, job_executor, job_priority,
            payload_mapping, target, enabled, created_by)
    VALUES (fn_consumer_register.consumer, fn_consumer_register.event_pattern,
            fn_consumer_register.action, fn_consumer_register.job_kind,
            fn_consumer_register.job_queue, fn_consumer_register.job_executor,
            fn_consumer_register.job_priority, fn_consumer_register.payload_mapping,
            fn_consumer_register.target, true,
            coalesce(nullif(fn_consumer_register.created_by, ''), session_user))
    ON CONFLICT ON CONSTRAINT consumer_registry_consumer_event_pattern_key DO UPDATE
       SET action = excluded.action,
           job_kind = excluded.job_kind,
           job_queue = excluded.job_queue,
           job_executor = excluded.job_executor,
           job_priority = excluded.job_priority,
           payload_mapping = excluded.payload_mapping,
           target = excluded.target,
           enabled = true
    RETURNING cr.id, (cr.xmax = 0) INTO v_id, v_created;

    RETURN jsonb_build_object('ok', true, 'registry_id', v_id,
                              'consumer', fn_consumer_register.consumer,
                              'event_pattern', fn_consumer_register.event_pattern,
                              'action', fn_consumer_register.action, 'created', v_created);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_consumer_register(text, text, text, text, text, text, integer, jsonb, regprocedure, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_consumer_register(text, text, text, text, text, text, integer, jsonb, regprocedure, text)
    TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_consumer_register(text, text, text, text, text, text, integer, jsonb, regprocedure, text) IS
    'Create or replace (and enable) the consumer (consumer, event_pattern). action enqueue_job: job_kind required, job_queue/job_priority as fn_job_enqueue, job_executor an executor_kind, payload_mapping NULL (event payload as is) or {"job_field": "<payload key>|$event_id|$event_type"}. action call_function: target a conveyor/iu_core function (event_id bigint) RETURNS jsonb. Bad input: SQLSTATE 22023. Answer {ok, registry_id, consumer, event_pattern, action, created}. Example: SELECT conveyor.fn_consumer_register(''pilot.cut'', ''staging.record_approved'', ''enqueue_job'', job_kind => ''staging.cut'', payload_mapping => ''{"record_id": "record_id"}'')';
