-- fn_consumer_disable: stop dispatch applying a consumer: its row for event_pattern, or all its
-- rows when event_pattern is NULL. The rows stay (history, and fn_consumer_register enables one
-- again); events read while a consumer is disabled are not delivered to it later.
-- Answer: {"ok": true, "consumer", "disabled": <rows switched off now>}.
CREATE OR REPLACE FUNCTION conveyor.fn_consumer_disable(
    consumer      text,
    event_pattern text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    IF fn_consumer_disable.consumer IS NULL OR fn_consumer_disable.consumer = '' THEN
        RAISE EXCEPTION 'fn_consumer_disable: consumer is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name a consumer of v_consumer_registry.';
    END IF;
    UPDATE consumer_registry AS cr
       SET enabled = false
     WHERE cr.consumer = fn_consumer_disable.consumer
       AND (fn_consumer_disable.event_pattern IS NULL
            OR cr.event_pattern = fn_consumer_disable.event_pattern)
       AND cr.enabled;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN jsonb_build_object('ok', true, 'consumer', fn_consumer_disable.consumer,
                              'disabled', v_count);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_consumer_disable(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_consumer_disable(text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_consumer_disable(text, text) IS
    'Disable a consumer''s row for event_pattern (NULL: all its rows); dispatch ignores disabled rows. Answer {ok, consumer, disabled}. Example: SELECT conveyor.fn_consumer_disable(''pilot.cut'')';
