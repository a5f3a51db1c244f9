-- fn_watchdog_acknowledge: an operator has seen an alert. Stamps acknowledged_at/by once; a
-- second acknowledgement keeps the first and answers already: true. Not gated: alerts can be
-- acknowledged while heartbeats are switched off.
-- Answer: {"ok": true, "alert_id", "acknowledged_at", "acknowledged_by", "already"} | refusal
-- not_found (with "alert_id").
CREATE OR REPLACE FUNCTION conveyor.fn_watchdog_acknowledge(
    alert_id        bigint,
    acknowledged_by text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    -- session_user, not current_user: inside SECURITY DEFINER current_user is the owner.
    v_by  text := coalesce(fn_watchdog_acknowledge.acknowledged_by, session_user::text);
    v_row queue_watchdog_alert%ROWTYPE;
BEGIN
    IF fn_watchdog_acknowledge.alert_id IS NULL THEN
        RAISE EXCEPTION 'fn_watchdog_acknowledge: alert_id is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id of a queue_watchdog_alert row (v_queue_watchdog_alert_open).';
    END IF;
    IF v_by = '' OR octet_length(v_by) > 255 THEN
        RAISE EXCEPTION 'fn_watchdog_acknowledge: acknowledged_by must be 1 to 255 bytes'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name who acknowledges; pass NULL for the session user.';
    END IF;

    UPDATE queue_watchdog_alert AS a
       SET acknowledged_at = clock_timestamp(), acknowledged_by = v_by
     WHERE a.id = fn_watchdog_acknowledge.alert_id AND a.acknowledged_at IS NULL
    RETURNING a.* INTO v_row;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'alert_id', v_row.id,
                                  'acknowledged_at', v_row.acknowledged_at,
                                  'acknowledged_by', v_row.acknowledged_by, 'already', false);
    END IF;
    SELECT a.* INTO v_row FROM queue_watchdog_alert AS a WHERE a.id = fn_watchdog_acknowledge.alert_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found',
                                  'alert_id', fn_watchdog_acknowledge.alert_id);
    END IF;
    RETURN jsonb_build_object('ok', true, 'alert_id', v_row.id,
                              'acknowledged_at', v_row.acknowledged_at,
                              'acknowledged_by', v_row.acknowledged_by, 'already', true);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_watchdog_acknowledge(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_watchdog_acknowledge(bigint, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_watchdog_acknowledge(bigint, text) IS
    'Acknowledge a watchdog alert (once; acknowledged_by NULL = session user). Answer {ok, alert_id, acknowledged_at, acknowledged_by, already}; refusal not_found. Example: SELECT conveyor.fn_watchdog_acknowledge(42, ''alice'')';
