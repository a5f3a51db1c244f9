-- fn_consumer_dispatch: trigger-out. Reads up to batch events past the outbox cursor 'dispatch'
-- (fn_outbox_read: (txid, id) order, never past a still-running transaction), applies every
-- enabled consumer_registry row whose pattern matches each event, and advances the cursor, all in
-- the caller's one transaction:
--   * enqueue_job: one job per (consumer, event) with idempotency key <consumer>:<event_id>, the
--     payload built by the row's payload_mapping, enqueued set-wise through fn_job_enqueue_many
--     (so every rule of fn_job_enqueue holds). A job that would be invalid (e.g. a payload over
--     queue.payload.max_bytes) is not enqueued: the pair gets a consumer dead letter instead.
--   * call_function: target(event_id) in its own sub-block (a savepoint): if it raises, or
--     answers {"refused": true}, only that call is rolled back and the pair gets a consumer dead
--     letter; the other consumers still get the event. Serialization failures and deadlocks are
--     re-raised (the whole dispatch is retried, nothing is dead-lettered for a transient clash).
--     The target is called by its catalog name with the event id as a bound parameter; no SQL
--     text is ever built from event data.
--   * every (consumer, event) handled is recorded in consumer_delivery (unique), in the same
--     transaction as its effect, and pairs already recorded are skipped: a re-read event (cursor
--     moved back, crash, replay) never produces a second job, even once the first job finished
--     and released its idempotency key.
--   * an event no enabled consumer matches is recorded in consumer_unmatched.
-- Dispatchers serialize on the cursor row (locked first): a second one waits, then reads after
-- the first one's advance. A crash anywhere rolls the whole batch back, cursor included.
-- Within a batch, enqueue_job consumers are applied before call_function consumers.
-- Gated by queue.dispatch.enabled; refuses job_substrate_disabled (changing nothing) while an
-- enabled enqueue_job consumer exists and queue.job_substrate.enabled is false.
-- Answer: {"ok": true, "read": <events read>, "matched": <(consumer, event) pairs matched, incl.
-- pairs delivered before>, "enqueued": <jobs created>, "called": <calls answered ok>,
-- "unmatched": <events no consumer matched>, "failed": <dead letters recorded>, "more": <a full
-- batch was read>}.
CREATE OR REPLACE FUNCTION conveyor.fn_consumer_dispatch(
    batch integer DEFAULT 500
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    c_cursor    CONSTANT text := 'dispatch';
    v_batch     integer := coalesce(fn_consumer_dispatch.batch, 500);
    v_ids       bigint[];
    v_types     text[];
    v_payloads  jsonb[];
    v_read      integer;
    v_last_txid xid8;
    v_last_id   bigint;
    v_matched   integer := 0;
    v_unmatched integer := 0;
    v_enqueued  integer := 0;
    v_called    integer := 0;
    v_failed    integer := 0;
    v_dead      integer;
    v_max_bytes integer;
    v_max_depth integer;
    v_jobs      jsonb;
    v_answer    jsonb;
    v_call      record;
    v_sqlstate  text;
    v_message   text;
BEGIN
    IF NOT fn_config_enabled('queue.dispatch.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'dispatch_disabled',
                                  'flag', 'queue.dispatch.enabled');
    END IF;
    IF v_batch NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'fn_consumer_dispatch: batch is %; it must be from 1 to 10000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call again (while more is true) for the next events.';
    END IF;
    IF NOT fn_config_enabled('queue.job_substrate.enabled')
       AND EXISTS (SELECT 1 FROM consumer_registry AS cr
                    WHERE cr.enabled AND cr.action = 'enqueue_job') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;

    INSERT INTO event_outbox_cursor AS c (consumer) VALUES (c_cursor)
    ON CONFLICT ON CONSTRAINT event_outbox_cursor_pkey DO NOTHING;
    PERFORM 1 FROM event_outbox_cursor AS c WHERE c.consumer = c_cursor FOR UPDATE;

    SELECT array_agg(r.id ORDER BY r.txid, r.id),
           array_agg(r.event_type ORDER BY r.txid, r.id),
           array_agg(r.payload ORDER BY r.txid, r.id),
           count(*),
           (array_agg(r.txid ORDER BY r.txid DESC, r.id DESC))[1],
           (array_agg(r.id ORDER BY r.txid DESC, r.id DESC))[1]
      INTO v_ids, v_types, v_payloads, v_read, v_last_txid, v_last_id
      FROM fn_outbox_read(consumer => c_cursor, batch => v_batch) AS r;
    IF v_read = 0 THEN
        RETURN jsonb_build_object('ok', true, 'read', 0, 'matched', 0, 'enqueued', 0, 'called', 0,
                                  'unmatched', 0, 'failed', 0, 'more', false);
    END IF;

    -- Matches, and the events nobody matches (recorded once).
    WITH ev AS (
        SELECT u.id, u.event_type FROM unnest(v_ids, v_types) AS u(id, event_type)
    ), pairs AS (
        SELECT ev.id, count(cr.id) AS consumers
          FROM ev
          LEFT JOIN consumer_registry AS cr
                 ON cr.enabled
                AND (cr.event_pattern = ev.event_type OR starts_with(ev.event_type, cr.pattern_prefix))
         GROUP BY ev.id
    ), recorded AS (
        INSERT INTO consumer_unmatched AS cu (event_id, event_type)
        SELECT ev.id, ev.event_type
          FROM ev JOIN pairs AS p ON p.id = ev.id
         WHERE p.consumers = 0
         ORDER BY ev.id
        ON CONFLICT ON CONSTRAINT consumer_unmatched_pkey DO NOTHING
        RETURNING cu.event_id
    )
    SELECT coalesce(sum(p.consumers), 0), count(*) FILTER (WHERE p.consumers = 0)
      INTO v_matched, v_unmatched
      FROM pairs AS p;

    -- enqueue_job: validate, record the deliveries, dead-letter the invalid, enqueue the rest.
    v_max_bytes := fn_job__config_number('queue.payload.max_bytes', 262144)::integer;
    v_max_depth := fn_job__config_number('queue.payload.max_depth', 32)::integer;
    WITH todo AS MATERIALIZED (
        SELECT u.ord, u.id AS event_id, cr.id AS registry_id, cr.consumer, cr.job_kind,
               cr.job_queue, cr.job_priority,
               CASE WHEN cr.payload_mapping IS NULL THEN u.payload
                    ELSE coalesce((SELECT jsonb_object_agg(mp.key,
                                              CASE mp.value #>> '{}'
                                                  WHEN '$event_id' THEN to_jsonb(u.id)
                                                  WHEN '$event_type' THEN to_jsonb(u.event_type)
                                                  ELSE coalesce(u.payload -> (mp.value #>> '{}'), 'null')
                                              END)
                                     FROM jsonb_each(cr.payload_mapping) AS mp(key, value)), '{}')
               END AS payload
          FROM unnest(v_ids, v_types, v_payloads) WITH ORDINALITY AS u(id, event_type, payload, ord)
          JOIN consumer_registry AS cr
            ON cr.enabled AND cr.action = 'enqueue_job'
           AND (cr.event_pattern = u.event_type OR starts_with(u.event_type, cr.pattern_prefix))
         WHERE NOT EXISTS (SELECT 1 FROM consumer_delivery AS cd
                            WHERE cd.consumer = cr.consumer AND cd.event_id = u.id)
    ), checked AS MATERIALIZED (
        SELECT t.*, t.consumer || ':' || t.event_id AS idempotency_key,
               fn_job__enqueue_problem(t.job_kind, t.payload, t.job_queue, t.job_priority, NULL,
                                       t.consumer || ':' || t.event_id, NULL,
                                       v_max_bytes, v_max_depth) AS problem
          FROM todo AS t
    ), delivered AS (
        INSERT INTO consumer_delivery AS cd (consumer, event_id, registry_id, outcome)
        SELECT c.consumer, c.event_id, c.registry_id,
               CASE WHEN c.problem IS NULL THEN 'enqueued' ELSE 'failed' END
          FROM checked AS c
         ORDER BY c.ord, c.consumer
        ON CONFLICT ON CONSTRAINT consumer_delivery_pkey DO NOTHING
        RETURNING cd.consumer, cd.event_id
    ), dead AS (
        INSERT INTO consumer_dead_letter AS dl (event_id, consumer, registry_id, error)
        SELECT c.event_id, c.consumer, c.registry_id,
               left(format('invalid job: %s %s', c.problem[1], c.problem[2]), 2000)
          FROM checked AS c
          JOIN delivered AS d ON d.consumer = c.consumer AND d.event_id = c.event_id
         WHERE c.problem IS NOT NULL
         ORDER BY c.ord, c.consumer
        ON CONFLICT ON CONSTRAINT consumer_dead_letter_consumer_event_id_key DO NOTHING
        RETURNING dl.id
    )
    SELECT (SELECT count(*) FROM dead),
           -- NULL queue/priority are left out (fn_job_enqueue_many's default), not sent as null.
           (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                 'kind', c.job_kind, 'queue', c.job_queue, 'priority', c.job_priority,
                                 'idempotency_key', c.idempotency_key))
                             || jsonb_build_object('payload', c.payload)
                             ORDER BY c.ord, c.consumer)
              FROM checked AS c
              JOIN delivered AS d ON d.consumer = c.consumer AND d.event_id = c.event_id
             WHERE c.problem IS NULL)
      INTO v_dead, v_jobs;
    v_failed := v_failed + v_dead;
    IF v_jobs IS NOT NULL THEN
        v_answer := fn_job_enqueue_many(jobs => v_jobs);
        IF NOT coalesce(v_answer -> 'ok' = 'true'::jsonb, false) THEN
            RAISE EXCEPTION 'fn_consumer_dispatch: fn_job_enqueue_many refused (%)', v_answer ->> 'reason'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Enable queue.job_substrate.enabled, or disable the enqueue_job consumers.';
        END IF;
        v_enqueued := (v_answer ->> 'created')::integer;
    END IF;

    -- call_function: one sub-block (savepoint) per call, so a failing consumer blocks no other.
    FOR v_call IN
        SELECT u.id AS event_id, cr.id AS registry_id, cr.consumer, n.nspname, p.proname
          FROM unnest(v_ids, v_types) WITH ORDINALITY AS u(id, event_type, ord)
          JOIN consumer_registry AS cr
            ON cr.enabled AND cr.action = 'call_function'
           AND (cr.event_pattern = u.event_type OR starts_with(u.event_type, cr.pattern_prefix))
          LEFT JOIN pg_proc AS p ON p.oid = cr.target
          LEFT JOIN pg_namespace AS n ON n.oid = p.pronamespace
         WHERE NOT EXISTS (SELECT 1 FROM consumer_delivery AS cd
                            WHERE cd.consumer = cr.consumer AND cd.event_id = u.id)
         ORDER BY u.ord, cr.consumer
    LOOP
        BEGIN
            IF v_call.proname IS NULL OR v_call.nspname NOT IN ('conveyor', 'iu_core') THEN
                RAISE EXCEPTION 'target function of consumer % is missing or outside conveyor/iu_core',
                                v_call.consumer
                    USING ERRCODE = 'undefined_function';
            END IF;
            EXECUTE format('SELECT %I.%I($1)', v_call.nspname, v_call.proname)
               INTO v_answer
              USING v_call.event_id;
            IF v_answer -> 'refused' = 'true'::jsonb THEN
                RAISE EXCEPTION 'refused: %', coalesce(v_answer ->> 'reason', '(no reason)')
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
            INSERT INTO consumer_delivery (consumer, event_id, registry_id, outcome)
            VALUES (v_call.consumer, v_call.event_id, v_call.registry_id, 'called');
            v_called := v_called + 1;
        EXCEPTION
            WHEN serialization_failure OR deadlock_detected THEN
                RAISE;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
                INSERT INTO consumer_delivery AS cd (consumer, event_id, registry_id, outcome)
                VALUES (v_call.consumer, v_call.event_id, v_call.registry_id, 'failed')
                ON CONFLICT ON CONSTRAINT consumer_delivery_pkey DO NOTHING;
                INSERT INTO consumer_dead_letter AS dl (event_id, consumer, registry_id, error)
                VALUES (v_call.event_id, v_call.consumer, v_call.registry_id,
                        left(v_sqlstate || ': ' || v_message, 2000))
                ON CONFLICT ON CONSTRAINT consumer_dead_letter_consumer_event_id_key DO NOTHING;
                v_failed := v_failed + 1;
        END;
    END LOOP;

    PERFORM fn_outbox_advance(consumer => c_cursor, last_txid => v_last_txid, last_id => v_last_id);
    RETURN jsonb_build_object('ok', true, 'read', v_read, 'matched', v_matched,
                              'enqueued', v_enqueued, 'called', v_called,
                              'unmatched', v_unmatched, 'failed', v_failed,
                              'more', v_read = v_batch);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_consumer_dispatch(integer) FROM PUBLIC;
-- A consumer tick that moves the dispatch cursor: the orchestrator's (conveyor_admin).
GRANT EXECUTE ON FUNCTION conveyor.fn_consumer_dispatch(integer) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_consumer_dispatch(integer) IS
    'Dispatch up to batch (1..10000, default 500) outbox events through cursor ''dispatch'' to every matching enabled consumer_registry row (enqueue_job: job key <consumer>:<event_id>; call_function: target(event_id), a failure becomes a consumer dead letter), record deliveries (each (consumer, event) at most once) and unmatched events, advance the cursor, in one transaction; dispatchers serialize on the cursor. Answer {ok, read, matched, enqueued, called, unmatched, failed, more}; refusals dispatch_disabled, job_substrate_disabled (an enqueue_job consumer is enabled but the substrate is off). Example: SELECT conveyor.fn_consumer_dispatch()';
