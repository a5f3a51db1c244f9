-- fn_heartbeat__metadata: metadata a heartbeat may store, or an error (22023) naming the caller.
-- A JSON object of at most 8 KB whose top-level keys do not look like credentials: heartbeat
-- rows are visible in v_queue_health's neighbourhood and in events, so they hold names, queues,
-- host and pid, never secrets (a key containing password, passwd, secret, token, credential,
-- dsn or apikey is refused; nested keys are the caller's responsibility). NULL → '{}'.
-- Private: no EXECUTE grant; the heartbeat functions call it.
CREATE OR REPLACE FUNCTION conveyor.fn_heartbeat__metadata(
    caller   text,
    metadata jsonb
) RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_key text;
BEGIN
    IF fn_heartbeat__metadata.metadata IS NULL THEN
        RETURN '{}'::jsonb;
    END IF;
    IF jsonb_typeof(fn_heartbeat__metadata.metadata) <> 'object' THEN
        RAISE EXCEPTION '%: metadata must be a JSON object, not %', caller,
                        jsonb_typeof(fn_heartbeat__metadata.metadata)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass e.g. {"queues": ["default"], "host": "…", "pid": 123}.';
    END IF;
    IF pg_column_size(fn_heartbeat__metadata.metadata) > 8192 THEN
        RAISE EXCEPTION '%: metadata is % bytes; the limit is 8192 bytes', caller,
                        pg_column_size(fn_heartbeat__metadata.metadata)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Keep heartbeat metadata to names, queues, host and pid.';
    END IF;
    SELECT k.key INTO v_key
      FROM jsonb_object_keys(fn_heartbeat__metadata.metadata) AS k(key)
     WHERE k.key ~* '(password|passwd|secret|token|credential|dsn|apikey|api_key)'
     ORDER BY k.key
     LIMIT 1;
    IF v_key IS NOT NULL THEN
        RAISE EXCEPTION '%: metadata key % looks like a credential; heartbeats never store secrets',
                        caller, quote_literal(left(v_key, 64))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave credentials out of heartbeat metadata (it is shown to monitors).';
    END IF;
    RETURN fn_heartbeat__metadata.metadata;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_heartbeat__metadata(text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_heartbeat__metadata(text, jsonb) IS
    'Private: validated heartbeat metadata (a JSON object ≤ 8 KB, no credential-like keys; NULL → {}), else SQLSTATE 22023 naming the caller.';
