-- fn_periodic_register: create or change a periodic (cron) job: at every slot of cron (UTC) the
-- orchestrator's fn_periodic_enqueue_due enqueues one job of kind with payload on queue at
-- priority. Registering an existing name replaces its schedule and job fields and enables it
-- again; its last_slot is kept, so slots already enqueued are not enqueued again. A new row
-- counts slots from its registration time. Everything is validated before the write: the cron
-- expression (the error names the field and value) must fire within 50 years, and kind,
-- payload, queue and priority follow fn_job_enqueue's rules. Not gated: the schedule may be set
-- up before the job substrate is enabled (enqueue_due refuses until it is).
-- Answer: {"ok": true, "name", "created": bool, "next_slot"}.
CREATE OR REPLACE FUNCTION conveyor.fn_periodic_register(
    name     text,
    cron     text,
    kind     text,
    payload  jsonb   DEFAULT '{}',
    queue    text    DEFAULT NULL,
    priority integer DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_payload jsonb := coalesce(fn_periodic_register.payload, '{}');
    v_problem text[];
    v_created boolean;
    v_cron    text;
    v_base    timestamptz;
BEGIN
    IF fn_periodic_register.name IS NULL OR octet_length(fn_periodic_register.name) > 128
       OR fn_periodic_register.name !~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]*$' THEN
        RAISE EXCEPTION 'fn_periodic_register: name % must be 1 to 128 bytes of ^[A-Za-z0-9][A-Za-z0-9_.:/-]*$',
                        quote_nullable(left(fn_periodic_register.name, 64))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the schedule like a job kind, e.g. ''reports.nightly''.';
    END IF;
    -- Parses (raising on a bad field) and walks once: an expression that never fires is refused.
    IF fn_cron__walk(fn_periodic_register.cron, now(), true, 'fn_periodic_register') IS NULL THEN
        RAISE EXCEPTION 'fn_periodic_register: cron expression % never fires (no slot within 50 years)',
                        quote_literal(fn_periodic_register.cron)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Check the day-of-month and month fields, e.g. ''0 0 31 2 *'' names February 31.';
    END IF;
    v_problem := fn_job__enqueue_problem(
        fn_periodic_register.kind, v_payload, fn_periodic_register.queue,
        fn_periodic_register.priority, NULL, NULL, NULL,
        fn_job__config_number('queue.payload.max_bytes', 262144)::integer,
        fn_job__config_number('queue.payload.max_depth', 32)::integer);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'fn_periodic_register: % %', v_problem[1], v_problem[2]
            USING ERRCODE = 'invalid_parameter_value', HINT = v_problem[3];
    END IF;

    INSERT INTO job_periodic AS jp (name, cron, kind, queue, payload, priority)
    VALUES (fn_periodic_register.name, btrim(fn_periodic_register.cron), fn_periodic_register.kind,
            coalesce(fn_periodic_register.queue, 'default'), v_payload,
            coalesce(fn_periodic_register.priority, 0))
    ON CONFLICT ON CONSTRAINT job_periodic_pkey DO UPDATE
       SET cron = excluded.cron,
           kind = excluded.kind,
           queue = excluded.queue,
           payload = excluded.payload,
           priority = excluded.priority,
           enabled = true,
           updated_at = now()
    RETURNING jp.cron, coalesce(jp.last_slot, jp.created_at), (jp.xmax = 0)
         INTO v_cron, v_base, v_created;

    RETURN jsonb_build_object('ok', true, 'name', fn_periodic_register.name, 'created', v_created,
                              'next_slot', fn_cron__walk(v_cron, v_base, true, 'fn_periodic_register'));
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_periodic_register(text, text, text, jsonb, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_periodic_register(text, text, text, jsonb, text, integer)
    TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_periodic_register(text, text, text, jsonb, text, integer) IS
    'Create or replace a periodic job: at each slot of cron (5 fields or @macro, UTC) fn_periodic_enqueue_due enqueues kind/payload on queue (NULL = default) at priority (NULL = 0). Re-registering keeps last_slot and enables the row. name 1..128 bytes ^[A-Za-z0-9][A-Za-z0-9_.:/-]*$. Bad cron (naming the field and value), a cron that never fires, or bad job fields: SQLSTATE 22023. Answer {ok, name, created, next_slot}. Example: SELECT conveyor.fn_periodic_register(''reports.nightly'', ''0 3 * * *'', ''reports.build'')';
