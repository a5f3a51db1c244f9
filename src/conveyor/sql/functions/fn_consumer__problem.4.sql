-- fn_consumer__problem: the one place that knows what a valid consumer_registry row is. Returns
-- NULL for a valid row, else ARRAY[argument, what is wrong, hint]; fn_consumer_register and the
-- registry's validation trigger turn that into their own 22023 error. Reads only the catalog and
-- executor_kind; writes nothing. Private (no EXECUTE grant).
-- A call_function target must live in conveyor or iu_core (only conveyor_admin creates functions
-- there), take exactly (event_id bigint) and return one jsonb: dispatch calls it by its oid with
-- the event id as a bound parameter, never with text taken from an event.
CREATE OR REPLACE FUNCTION conveyor.fn_consumer__problem(
    consumer        text,
    event_pattern   text,
    action          text,
    job_kind        text,
    job_queue       text,
    job_executor    text,
    job_priority    integer,
    payload_mapping jsonb,
    target          regprocedure
) RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_problem text[];
    v_bad     text;
    v_fn      record;
BEGIN
    IF consumer IS NULL OR consumer !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' THEN
        RETURN ARRAY['consumer', format('%s is not a consumer name', quote_nullable(left(consumer, 64))),
                     'Use 1 to 128 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit, e.g. ''pilot.cut''.'];
    END IF;
    IF event_pattern IS NULL OR char_length(event_pattern) > 200
       OR NOT (event_pattern ~ '^[a-z][a-z0-9_]*([./][a-z0-9_]+)+$'
               OR event_pattern ~ '^[a-z][a-z0-9_]*([./][a-z0-9_]+)*[./]\*$') THEN
        RETURN ARRAY['event_pattern',
                     format('%s is neither an event type nor a prefix pattern',
                            quote_nullable(left(event_pattern, 64))),
                     'Name an event type (staging.record_approved) or a prefix ending in .* or /* (staging.*, system/*).'];
    END IF;
    IF action IS NULL OR action NOT IN ('enqueue_job', 'call_function') THEN
        RETURN ARRAY['action', format('%s is not an action', quote_nullable(left(action, 64))),
                     'Use enqueue_job or call_function.'];
    END IF;

    IF action = 'enqueue_job' THEN
        IF target IS NOT NULL THEN
            RETURN ARRAY['target', 'is only for call_function', 'Pass NULL for an enqueue_job consumer.'];
        END IF;
        IF job_kind IS NULL THEN
            RETURN ARRAY['job_kind', 'is required for enqueue_job', 'Name the kind of job to enqueue per event.'];
        END IF;
        v_problem := fn_job__enqueue_problem(job_kind, '{}'::jsonb, job_queue, job_priority,
                                             NULL, NULL, NULL, 262144, 32);
        IF v_problem IS NOT NULL THEN
            RETURN ARRAY['job_' || v_problem[1], v_problem[2], v_problem[3]];
        END IF;
        IF job_executor IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM executor_kind AS ek WHERE ek.executor = job_executor) THEN
            RETURN ARRAY['job_executor', format('%L is not an executor', left(job_executor, 64)),
                         'Use one of executor_kind (agent, codex, dot, external_worker, operator).'];
        END IF;
        IF payload_mapping IS NOT NULL THEN
            IF jsonb_typeof(payload_mapping) <> 'object' THEN
                RETURN ARRAY['payload_mapping',
                             format('must be a JSON object, not %s', jsonb_typeof(payload_mapping)),
                             'Pass {"job_field": "event_payload_key", …}, or NULL for the event payload as is.'];
            END IF;
            SELECT m.key INTO v_bad
              FROM jsonb_each(payload_mapping) AS m(key, value)
             WHERE m.key = '' OR jsonb_typeof(m.value) <> 'string' OR m.value #>> '{}' = ''
                OR (left(m.value #>> '{}', 1) = '$' AND m.value #>> '{}' NOT IN ('$event_id', '$event_type'))
             ORDER BY m.key
             LIMIT 1;
            IF FOUND THEN
                RETURN ARRAY['payload_mapping', format('entry %L is not a non-empty payload key', left(v_bad, 64)),
                             'Map each job field to a top-level event payload key, $event_id or $event_type.'];
            END IF;
        END IF;
        RETURN NULL;
    END IF;

    -- call_function
    IF job_kind IS NOT NULL OR job_queue IS NOT NULL OR job_executor IS NOT NULL
       OR job_priority IS NOT NULL OR payload_mapping IS NOT NULL THEN
        RETURN ARRAY['job_kind', 'job fields are only for enqueue_job',
                     'Pass NULL job_kind, job_queue, job_executor, job_priority and payload_mapping.'];
    END IF;
    IF target IS NULL THEN
        RETURN ARRAY['target', 'is required for call_function',
                     'Name the function, e.g. ''conveyor.fn_iu_auto_instantiate_from_event(bigint)''.'];
    END IF;
    SELECT n.nspname, p.pronargs, p.proargtypes, p.prorettype, p.proretset, p.prokind
      INTO v_fn
      FROM pg_proc AS p
      JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE p.oid = target;
    IF NOT FOUND THEN
        RETURN ARRAY['target', 'does not exist', 'Name an existing function.'];
    END IF;
    IF v_fn.nspname NOT IN ('conveyor', 'iu_core') THEN
        RETURN ARRAY['target', format('%s is in schema %s; only conveyor and iu_core are allowed',
                                      target::text, v_fn.nspname),
                     'Create the consumer function in schema conveyor (as conveyor_admin).'];
    END IF;
    IF v_fn.prokind <> 'f' OR v_fn.pronargs <> 1 OR v_fn.proargtypes[0] <> 'bigint'::regtype
       OR v_fn.prorettype <> 'jsonb'::regtype OR v_fn.proretset THEN
        RETURN ARRAY['target', format('%s must take (event_id bigint) and return jsonb', target::text),
                     'Write a function f(event_id bigint) RETURNS jsonb.'];
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_consumer__problem(text, text, text, text, text, text, integer, jsonb, regprocedure) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_consumer__problem(text, text, text, text, text, text, integer, jsonb, regprocedure) IS
    'Private: validate one consumer_registry row for fn_consumer_register and the registry trigger. NULL when valid, else ARRAY[argument, problem, hint].';
