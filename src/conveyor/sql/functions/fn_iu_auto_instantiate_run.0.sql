-- fn_iu_auto_instantiate_run: the legacy consumer path. Reads the outbox through its own
-- cursor legacy.auto_instantiate, applies fn_iu_auto_instantiate_from_event to every
-- iu.template.instance_auto_composed event, steps over every other event, and advances the
-- cursor past all it read, in one transaction. Runs are serialised by locking the cursor row,
-- so two at once never apply the same batch twice. An event refused as invalid is stepped
-- over (reported in invalid_event_ids and as a WARNING) so it cannot block the ones behind it.
-- Gated by iu.auto_instantiate.legacy_enabled (phase 4 turns it off when dispatch takes over).
-- Answer: {"ok": true, "consumer", "read", "matched", "created", "already", "invalid",
--          "invalid_event_ids": [...]} | {"refused": true, "reason":
--          "auto_instantiate_legacy_disabled"}.
CREATE OR REPLACE FUNCTION conveyor.fn_iu_auto_instantiate_run(batch integer DEFAULT 100)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_consumer    CONSTANT text := 'legacy.auto_instantiate';
    v_batch       integer := COALESCE(fn_iu_auto_instantiate_run.batch, 100);
    v_event       record;
    v_answer      jsonb;
    v_read        integer := 0;
    v_matched     integer := 0;
    v_created     integer := 0;
    v_already     integer := 0;
    v_invalid_ids bigint[] := '{}';
    v_last_txid   xid8;
    v_last_id     bigint;
BEGIN
    IF NOT conveyor.fn_config_enabled('iu.auto_instantiate.legacy_enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'auto_instantiate_legacy_disabled',
                                  'flag', 'iu.auto_instantiate.legacy_enabled');
    END IF;
    IF v_batch < 1 OR v_batch > 10000 THEN
        RAISE EXCEPTION 'fn_iu_auto_instantiate_run: batch % is outside 1..10000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Process at most 10000 events per run; run again for more.';
    END IF;

    INSERT INTO event_outbox_cursor AS c (consumer)
    VALUES (v_consumer)
    ON CONFLICT ON CONSTRAINT event_outbox_cursor_pkey DO NOTHING;
    PERFORM 1 FROM event_outbox_cursor AS c WHERE c.consumer = v_consumer FOR UPDATE;

    FOR v_event IN
        SELECT r.id, r.txid, r.event_type
          FROM conveyor.fn_outbox_read(consumer => v_consumer, batch => v_batch) AS r
    LOOP
        v_read := v_read + 1;
        v_last_txid := v_event.txid;
        v_last_id := v_event.id;
        CONTINUE WHEN v_event.event_type <> 'iu.template.instance_auto_composed';

        v_matched := v_matched + 1;
        v_answer := conveyor.fn_iu_auto_instantiate_from_event(v_event.id);
        IF (v_answer ->> 'refused')::boolean THEN
            v_invalid_ids := v_invalid_ids || v_event.id;
            RAISE WARNING 'fn_iu_auto_instantiate_run: event % stepped over (%)',
                          v_event.id, concat_ws(' ', v_answer ->> 'reason', v_answer ->> 'field');
        ELSIF (v_answer ->> 'already')::boolean THEN
            v_already := v_already + 1;
        ELSE
            v_created := v_created + 1;
        END IF;
    END LOOP;

    IF v_read > 0 THEN
        PERFORM conveyor.fn_outbox_advance(consumer => v_consumer, last_txid => v_last_txid,
                                           last_id => v_last_id);
    END IF;
    RETURN jsonb_build_object('ok', true, 'consumer', v_consumer, 'read', v_read,
                              'matched', v_matched, 'created', v_created,
                              'already', v_already,
                              'invalid', cardinality(v_invalid_ids),
                              'invalid_event_ids', to_jsonb(v_invalid_ids));
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_iu_auto_instantiate_run(integer) FROM PUBLIC;
-- A consumer tick that moves the legacy cursor: the orchestrator's (conveyor_admin), not a
-- worker's.
GRANT EXECUTE ON FUNCTION conveyor.fn_iu_auto_instantiate_run(integer) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_iu_auto_instantiate_run(integer) IS
    'Legacy consumer: read up to batch events through cursor legacy.auto_instantiate, instantiate each iu.template.instance_auto_composed event, advance. Gated by iu.auto_instantiate.legacy_enabled (refusal auto_instantiate_legacy_disabled). Answer {ok, consumer, read, matched, created, already, invalid, invalid_event_ids}. Example: SELECT conveyor.fn_iu_auto_instantiate_run()';
