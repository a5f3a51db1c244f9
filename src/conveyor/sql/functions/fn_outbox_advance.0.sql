-- fn_outbox_advance: move a consumer's cursor forward to (last_txid, last_id), normally the
-- position of the last event fn_outbox_read returned, and count the events passed.
-- Forward only: a position at or behind the cursor (a repeated or stale advance, e.g. by a
-- second reader of the same consumer that finished later) is a no-op answered with
-- moved:false and the cursor's current position; it is not an error, because the events it
-- covers were already passed.
-- A position that is not readable yet is an error, because advancing there could skip an
-- event still being committed: last_txid not below every transaction of this database that
-- is still running (the caller's own included). This is checked directly rather than against
-- fn_outbox_horizon(), which may step back for a moment and would then refuse a position a
-- read just returned: the xids other databases hold are read first, and the snapshot that
-- lists running transactions is taken by a later statement, so any transaction still
-- running there was already running, with its xid, when the other databases were looked at.
-- Answer: {"ok": true, "consumer", "moved", "last_txid", "last_id", "events": <passed now>}.
CREATE OR REPLACE FUNCTION conveyor.fn_outbox_advance(
    consumer  text,
    last_txid xid8,
    last_id   bigint
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_elsewhere bigint[];
    v_blocker   xid8;
    v_cur_txid  xid8;
    v_cur_id    bigint;
    v_events    bigint;
BEGIN
    IF fn_outbox_advance.consumer IS NULL
       OR fn_outbox_advance.consumer !~ '^[A-Za-z0-9_.:/@+=#-]{1,200}$' THEN
        RAISE EXCEPTION 'fn_outbox_advance: consumer % is not a valid consumer name',
                        quote_nullable(fn_outbox_advance.consumer)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use the consumer name passed to fn_outbox_read.';
    END IF;
    IF fn_outbox_advance.last_txid IS NULL OR fn_outbox_advance.last_id IS NULL
       OR fn_outbox_advance.last_id < 0 THEN
        RAISE EXCEPTION 'fn_outbox_advance: position (%, %) is incomplete or negative',
                        quote_nullable(fn_outbox_advance.last_txid),
                        quote_nullable(fn_outbox_advance.last_id)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the txid and id of the last event fn_outbox_read returned.';
    END IF;
    -- Transactions running in other databases (32-bit xids): they cannot write this outbox.
    SELECT COALESCE(array_agg(a.backend_xid::text::bigint), '{}') INTO v_elsewhere
      FROM pg_stat_get_activity(NULL::integer) AS a
     WHERE a.backend_xid IS NOT NULL
       AND a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database AS d
                                      WHERE d.datname = current_database());
    SELECT x.xid INTO v_blocker
      FROM pg_snapshot_xip(pg_current_snapshot()) AS x(xid)
     WHERE x.xid < fn_outbox_advance.last_txid
       AND (x.xid::text::numeric % 4294967296)::bigint <> ALL (v_elsewhere)
       AND pg_xact_status(x.xid) = 'in progress'
     ORDER BY x.xid
     LIMIT 1;
    IF v_blocker IS NULL
       AND fn_outbox_advance.last_txid >= pg_snapshot_xmax(pg_current_snapshot()) THEN
        v_blocker := fn_outbox_advance.last_txid;  -- not even finished yet
    END IF;
    IF v_blocker IS NULL
       AND fn_outbox_advance.last_txid >= pg_current_xact_id_if_assigned() THEN
        v_blocker := pg_current_xact_id_if_assigned();  -- the caller's own, uncommitted events
    END IF;
    IF v_blocker IS NOT NULL THEN
        RAISE EXCEPTION 'fn_outbox_advance: last_txid % is not readable yet (transaction % is still running)',
                        fn_outbox_advance.last_txid, v_blocker
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Advance only to the (txid, id) of an event fn_outbox_read returned.';
    END IF;

    INSERT INTO event_outbox_cursor AS c (consumer)
    VALUES (fn_outbox_advance.consumer)
    ON CONFLICT ON CONSTRAINT event_outbox_cursor_pkey DO NOTHING;

    SELECT c.last_txid, c.last_id INTO v_cur_txid, v_cur_id
      FROM event_outbox_cursor AS c
     WHERE c.consumer = fn_outbox_advance.consumer
       FOR UPDATE;

    IF (fn_outbox_advance.last_txid, fn_outbox_advance.last_id) <= (v_cur_txid, v_cur_id) THEN
        RETURN jsonb_build_object('ok', true, 'consumer', fn_outbox_advance.consumer,
                                  'moved', false, 'last_txid', v_cur_txid::text,
                                  'last_id', v_cur_id, 'events', 0);
    END IF;

    SELECT count(*) INTO v_events
      FROM event_outbox AS eo
     WHERE (eo.txid, eo.id) > (v_cur_txid, v_cur_id)
       AND (eo.txid, eo.id) <= (fn_outbox_advance.last_txid, fn_outbox_advance.last_id);

    UPDATE event_outbox_cursor AS c
       SET last_txid = fn_outbox_advance.last_txid,
           last_id = fn_outbox_advance.last_id,
           updated_at = clock_timestamp(),
           events_read = c.events_read + v_events
     WHERE c.consumer = fn_outbox_advance.consumer;

    RETURN jsonb_build_object('ok', true, 'consumer', fn_outbox_advance.consumer,
                              'moved', true, 'last_txid', fn_outbox_advance.last_txid::text,
                              'last_id', fn_outbox_advance.last_id, 'events', v_events);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_outbox_advance(text, xid8, bigint) FROM PUBLIC;
-- Not conveyor_worker: it moves ANY consumer's cursor, so a worker could make the platform's
-- consumers (outbound, legacy, dispatch) skip events they never delivered.
GRANT EXECUTE ON FUNCTION conveyor.fn_outbox_advance(text, xid8, bigint) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_outbox_advance(text, xid8, bigint) IS
    'Move a consumer''s cursor forward to (last_txid, last_id) and count the events passed. Never backwards: a position at or behind the cursor answers moved:false and changes nothing. Answer {ok, consumer, moved, last_txid (text), last_id, events}. Example: SELECT conveyor.fn_outbox_advance(''my.consumer'', ''1234'', 42)';
