-- fn_pilot_route: the call_function target of the pilot's four consumer_registry rows. Given a
-- staging.* outbox event, it enqueues the job for the record's next step, for records of
-- pilot.cut.collection only (consumer_registry matches event types, not payloads, so the
-- collection filter lives here):
--   staging.record_approved → staging.cut, staging.record_consumed → staging.verify_cut,
--   staging.record_verified → staging.cleanup, staging.record_cleaned → nothing (terminal).
-- The job's idempotency key is pilot:<event_id>, and dispatch calls a consumer at most once per
-- event, so an event never yields two jobs. Jobs are enqueued whatever pilot.cut.enabled says:
-- the flag gates the steps (fn_pilot_cut …), and a job of a switched-off pilot waits (snoozed)
-- in job_queue, so nothing is lost and switching the flag back on resumes every record where it
-- stood. Answer: {"ok": true, "event_id", "enqueued": bool, "job_id", "kind"} |
-- {"ok": true, "event_id", "skipped": "not_pilot_collection" | "terminal"} | fn_job_enqueue's
-- refusal (dispatch then records a consumer dead letter).
CREATE OR REPLACE FUNCTION conveyor.fn_pilot_route(event_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_event  record;
    v_kind   text;
    v_answer jsonb;
BEGIN
    SELECT eo.id, eo.event_type, eo.payload INTO v_event
      FROM event_outbox AS eo WHERE eo.id = fn_pilot_route.event_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fn_pilot_route: event % does not exist', fn_pilot_route.event_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id of a staging.* event in event_outbox (dispatch does).';
    END IF;
    v_kind := CASE v_event.event_type
                  WHEN 'staging.record_approved' THEN 'staging.cut'
                  WHEN 'staging.record_consumed' THEN 'staging.verify_cut'
                  WHEN 'staging.record_verified' THEN 'staging.cleanup'
                  WHEN 'staging.record_cleaned' THEN NULL
                  ELSE 'unknown'
              END;
    IF v_kind = 'unknown' THEN
        RAISE EXCEPTION 'fn_pilot_route: event % is a %, not a pilot step event',
                        fn_pilot_route.event_id, v_event.event_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Only staging.record_approved, _consumed, _verified and _cleaned are routed.';
    END IF;
    IF (v_event.payload ->> 'collection') IS DISTINCT FROM (fn_config_get('pilot.cut.collection') #>> '{}') THEN
        RETURN jsonb_build_object('ok', true, 'event_id', v_event.id,
                                  'skipped', 'not_pilot_collection');
    END IF;
    IF v_kind IS NULL THEN
        RETURN jsonb_build_object('ok', true, 'event_id', v_event.id, 'skipped', 'terminal');
    END IF;

    v_answer := fn_job_enqueue(
        kind => v_kind,
        payload => jsonb_build_object('record_id', (v_event.payload ->> 'record_id')::bigint,
                                      'collection', v_event.payload ->> 'collection',
                                      'record_key', v_event.payload ->> 'record_key',
                                      'event_id', v_event.id),
        idempotency_key => 'pilot:' || v_event.id);
    IF v_answer ? 'refused' THEN
        RETURN v_answer;
    END IF;
    RETURN jsonb_build_object('ok', true, 'event_id', v_event.id, 'kind', v_kind,
                              'enqueued', v_answer -> 'created',
                              'job_id', v_answer -> 'job_id');
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_pilot_route(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_pilot_route(bigint) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_pilot_route(bigint) IS
    'Registry target of the pilot: for a staging.* event of a pilot.cut.collection record, enqueue the next step''s job (approved → staging.cut, consumed → staging.verify_cut, verified → staging.cleanup; cleaned: terminal, no job), key pilot:<event_id>. Other collections: {ok, skipped: not_pilot_collection}. Example: SELECT conveyor.fn_pilot_route(42)';
