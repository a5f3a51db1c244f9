-- fn_periodic_enqueue_due: enqueue the due slots of the periodic jobs (one tick of the cron).
-- For each enabled job_periodic row, locked FOR UPDATE SKIP LOCKED (a row another orchestrator
-- is handling right now is left to it), the due slots are those after last_slot (NULL: the
-- registration time) and at or before now(). queue.periodic.missed_policy decides what a run
-- after downtime enqueues:
--   'latest' (default; also used for an unknown value): only the most recent due slot; the
--            older missed ones are reported in skipped (reason missed, first_missed and
--            last_missed);
--   'all':   every due slot, oldest first, but at most the 100 most recent; older ones are
--            reported in skipped (reason over_cap).
-- Each slot goes through fn_job_enqueue with idempotency key periodic:<name>:<slot, ISO UTC>,
-- and last_slot moves to the newest enqueued slot in the same transaction: with the row lock
-- this enqueues a slot exactly once however many orchestrators tick. A slot whose key a live job
-- already holds (last_slot was reset by hand) is reported in skipped (already_enqueued). A row
-- whose job fn_job_enqueue now rejects (22023: a limit was lowered since it was registered) is
-- reported in skipped (invalid, with the error) and keeps its last_slot; the others go on.
-- batch bounds the rows that had something due; "more" says rows were left for the next call.
-- Answer: {"ok": true, "enqueued": [{"name", "slot", "job_id"}…], "skipped": [{"name",
-- "reason", …}…], "more": bool} | the enqueue refusal (job_substrate_disabled) passed through.
CREATE OR REPLACE FUNCTION conveyor.fn_periodic_enqueue_due(
    batch integer DEFAULT 100
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    c_cap      CONSTANT integer := 100;
    v_batch    integer := coalesce(fn_periodic_enqueue_due.batch, 100);
    v_now      timestamptz := now();
    v_policy   text := fn_config_get('queue.periodic.missed_policy') #>> '{}';
    v_row      record;
    v_base     timestamptz;
    v_first    timestamptz;
    v_slot     timestamptz;
    v_slots    timestamptz[];
    v_answer   jsonb;
    v_key      text;
    v_done     integer := 0;
    v_more     boolean := false;
    v_enqueued jsonb := '[]';
    v_skipped  jsonb := '[]';
    v_row_done jsonb;
    v_row_skip jsonb;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF v_batch NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'fn_periodic_enqueue_due: batch is %; it must be from 1 to 10000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call again for the rest.';
    END IF;
    IF v_policy IS DISTINCT FROM 'all' THEN
        v_policy := 'latest';
    END IF;

    FOR v_row IN
        SELECT jp.name, jp.cron, jp.kind, jp.queue, jp.payload, jp.priority, jp.last_slot,
               jp.created_at
          FROM job_periodic AS jp
         WHERE jp.enabled
         ORDER BY jp.name
           FOR UPDATE OF jp SKIP LOCKED
    LOOP
        v_base := coalesce(v_row.last_slot, v_row.created_at);
        v_first := fn_cron__walk(v_row.cron, v_base, true, 'fn_periodic_enqueue_due');
        CONTINUE WHEN v_first IS NULL OR v_first > v_now;
        IF v_done >= v_batch THEN
            v_more := true;
            EXIT;
        END IF;
        v_done := v_done + 1;

        -- Due slots, newest first, walking back from now (never through the whole gap).
        v_slots := '{}';
        v_slot := v_now;
        LOOP
            v_slot := fn_cron__walk(v_row.cron, v_slot, false, 'fn_periodic_enqueue_due');
            EXIT WHEN v_slot IS NULL OR v_slot <= v_base;
            v_slots := v_slots || v_slot;
            EXIT WHEN cardinality(v_slots) >= CASE v_policy WHEN 'all' THEN c_cap ELSE 1 END;
            v_slot := v_slot - interval '1 minute';  -- strictly before the slot just taken
        END LOOP;
        v_row_done := '[]';
        v_row_skip := '[]';
        IF v_slots[cardinality(v_slots)] > v_first THEN
            v_row_skip := jsonb_build_array(jsonb_build_object(
                'name', v_row.name,
                'reason', CASE v_policy WHEN 'all' THEN 'over_cap' ELSE 'missed' END,
                'first_missed', v_first,
                'last_missed', fn_cron__walk(v_row.cron, v_slots[cardinality(v_slots)] - interval '1 minute',
                                             false, 'fn_periodic_enqueue_due')));
        END IF;

        -- One row's enqueues and its last_slot commit or fail together; a row whose job no
        -- longer passes fn_job_enqueue's checks (a limit lowered since it was registered) is
        -- reported and left as it is, and the other rows go on.
        BEGIN
            FOR v_i IN REVERSE cardinality(v_slots)..1 LOOP
                v_key := 'periodic:' || v_row.name || ':'
                         || to_char(v_slots[v_i] AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
                v_answer := fn_job_enqueue(kind => v_row.kind, payload => v_row.payload,
                                           queue => v_row.queue, priority => v_row.priority,
                                           idempotency_key => v_key);
                IF NOT coalesce((v_answer ->> 'ok')::boolean, false) THEN
                    RETURN v_answer;  -- a refusal, passed through as fn_job_enqueue gave it
                END IF;
                IF (v_answer ->> 'created')::boolean THEN
                    v_row_done := v_row_done || jsonb_build_array(jsonb_build_object(
                        'name', v_row.name, 'slot', v_slots[v_i], 'job_id', v_answer -> 'job_id'));
                ELSE
                    v_row_skip := v_row_skip || jsonb_build_array(jsonb_build_object(
                        'name', v_row.name, 'reason', 'already_enqueued', 'slot', v_slots[v_i],
                        'job_id', v_answer -> 'job_id'));
                END IF;
            END LOOP;
            UPDATE job_periodic AS jp
               SET last_slot = v_slots[1]
             WHERE jp.name = v_row.name;
        EXCEPTION WHEN invalid_parameter_value THEN
            v_row_done := '[]';
            v_row_skip := jsonb_build_array(jsonb_build_object(
                'name', v_row.name, 'reason', 'invalid', 'error', SQLERRM));
        END;
        v_enqueued := v_enqueued || v_row_done;
        v_skipped := v_skipped || v_row_skip;
    END LOOP;

    RETURN jsonb_build_object('ok', true, 'enqueued', v_enqueued, 'skipped', v_skipped,
                              'more', v_more);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_periodic_enqueue_due(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_periodic_enqueue_due(integer) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_periodic_enqueue_due(integer) IS
    'Enqueue the due slots (after last_slot, at or before now()) of up to batch (1..10000, default 100) enabled periodic jobs, each row locked FOR UPDATE SKIP LOCKED, each slot through fn_job_enqueue with idempotency key periodic:<name>:<slot ISO UTC>, last_slot advanced in the same transaction. queue.periodic.missed_policy: latest (default: only the newest missed slot) or all (each, at most 100 newest). Answer {ok, enqueued: [{name, slot, job_id}], skipped: [{name, reason (missed|over_cap|already_enqueued|invalid), …}], more}; refusal job_substrate_disabled. Example: SELECT conveyor.fn_periodic_enqueue_due()';
