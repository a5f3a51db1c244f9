-- fn_outbox_read: the next events after the consumer's cursor, oldest first, without moving it.
--
-- Ordering and visibility: events are ordered by (txid, id) and only events whose txid is
-- below fn_outbox_horizon() are returned: every transaction of this database below it has
-- finished, so those events are final, and any event that becomes visible later belongs to a
-- transaction at or above it, i.e. it sorts after everything returned now. A cursor at
-- (last_txid, last_id) therefore never skips an event whose transaction commits late (the
-- bigint-sequence gap: id 11 committing before id 10). The price: a long-running writing
-- transaction in this database holds back delivery (never loses it) until it ends.
-- Events emitted by the reading transaction itself are not returned either.
CREATE OR REPLACE FUNCTION conveyor.fn_outbox_read(
    consumer text,
    batch    integer DEFAULT 100
) RETURNS TABLE (
    id         bigint,
    txid       xid8,
    event_type text,
    payload    jsonb,
    source     text,
    created_at timestamptz
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_batch     integer := COALESCE(fn_outbox_read.batch, 100);
    v_last_txid xid8;
    v_last_id   bigint;
BEGIN
    IF fn_outbox_read.consumer IS NULL
       OR fn_outbox_read.consumer !~ '^[A-Za-z0-9_.:/@+=#-]{1,200}$' THEN
        RAISE EXCEPTION 'fn_outbox_read: consumer % is not a valid consumer name',
                        quote_nullable(fn_outbox_read.consumer)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1 to 200 characters from A-Z a-z 0-9 _ . : / @ + = # -, '
                         'e.g. outbound.iu_outbound_default.';
    END IF;
    IF v_batch < 1 OR v_batch > 10000 THEN
        RAISE EXCEPTION 'fn_outbox_read: batch % is outside 1..10000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Read at most 10000 events per call; loop to read more.';
    END IF;

    SELECT c.last_txid, c.last_id INTO v_last_txid, v_last_id
      FROM event_outbox_cursor AS c
     WHERE c.consumer = fn_outbox_read.consumer;
    IF NOT FOUND THEN
        -- First use: the cursor starts at the beginning of the outbox.
        INSERT INTO event_outbox_cursor AS c (consumer)
        VALUES (fn_outbox_read.consumer)
        ON CONFLICT ON CONSTRAINT event_outbox_cursor_pkey DO NOTHING;
        v_last_txid := '0'::xid8;
        v_last_id := 0;
    END IF;

    RETURN QUERY
        SELECT eo.id, eo.txid, eo.event_type, eo.payload, eo.source, eo.created_at
          FROM event_outbox AS eo
         WHERE (eo.txid, eo.id) > (v_last_txid, v_last_id)
           AND eo.txid < conveyor.fn_outbox_horizon()
         ORDER BY eo.txid, eo.id
         LIMIT v_batch;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_outbox_read(text, integer) FROM PUBLIC;
-- Not conveyor_worker: reading creates a cursor under any name, and every event's payload is
-- returned; consumers are the orchestrator's (conveyor_admin) business.
GRANT EXECUTE ON FUNCTION conveyor.fn_outbox_read(text, integer) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_outbox_read(text, integer) IS
    'Up to batch (1..10000, default 100) events after the consumer''s cursor, ordered by (txid, id), only from transactions below fn_outbox_horizon() (so a late commit is never skipped). Creates the cursor at the beginning on first use; does not advance it (fn_outbox_advance does). Example: SELECT * FROM conveyor.fn_outbox_read(''my.consumer'', 50)';
