-- fn_job__enqueue_problem: the one place that knows what a valid job is. Returns NULL for a
-- valid job, else ARRAY[argument, what is wrong (with the limit), hint]; fn_job_enqueue and
-- fn_job_enqueue_many turn that into their own 22023 error. Pure checks: reads nothing, writes
-- nothing. Private (no EXECUTE grant): callers are the SECURITY DEFINER enqueue functions.
--
-- payload size is pg_column_size(payload): the size of the binary jsonb value as passed in, an
-- O(1) read of its header rather than a serialisation, and what the row stores before TOAST
-- compression. Measured against the JSON text: ~1.0x for long strings, ~1.1x for a small flat
-- object, ~1.5x for an array of 1,000 small objects (headers per value).
-- An argument that is already TOAST-compressed (read from a table, e.g. a caller's temp table)
-- would report its compressed size there: 20 MB of repetitive JSON measured 229 kB and passed
-- the 256 kB limit. Such a value is measured decompressed instead (`|| '{}'` returns the
-- detoasted value, same binary format), so the limit always bounds what a claim hands out.
-- Depth is checked without recursion: strict $.**{N} finds any value N levels down (a level is
-- an object member or an array element), so a payload is too deep iff level max_depth+1 exists.
CREATE OR REPLACE FUNCTION conveyor.fn_job__enqueue_problem(
    kind            text,
    payload         jsonb,
    queue           text,
    priority        numeric,
    run_at          timestamptz,
    idempotency_key text,
    max_attempts    numeric,
    max_bytes       integer,
    max_depth       integer
) RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_size       integer;
    v_kind_hint  CONSTANT text := 'Name the job kind with letters, digits and _ . : / -, starting '
                                  'with a letter or digit, at most 128 bytes (e.g. ''email.send'').';
    v_queue_hint CONSTANT text := 'Use lower-case letters, digits and _ . -, starting with a letter '
                                  'or digit, at most 63 bytes; pass NULL for ''default''.';
BEGIN
    IF kind IS NULL OR kind = '' THEN
        RETURN ARRAY['kind', 'is required', v_kind_hint];
    ELSIF octet_length(kind) > 128 THEN
        RETURN ARRAY['kind', format('is %s bytes; the limit is 128 bytes', octet_length(kind)),
                     v_kind_hint];
    ELSIF kind !~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]*$' THEN
        RETURN ARRAY['kind', format('%L does not match ^[A-Za-z0-9][A-Za-z0-9_.:/-]*$', kind),
                     v_kind_hint];
    END IF;

    IF queue IS NOT NULL THEN
        IF octet_length(queue) > 63 THEN
            RETURN ARRAY['queue', format('is %s bytes; the limit is 63 bytes', octet_length(queue)),
                         v_queue_hint];
        ELSIF queue !~ '^[a-z0-9][a-z0-9_.-]*$' THEN
            RETURN ARRAY['queue', format('%L does not match ^[a-z0-9][a-z0-9_.-]*$', queue),
                         v_queue_hint];
        END IF;
    END IF;

    IF payload IS NOT NULL THEN
        v_size := pg_column_size(payload);
        IF v_size <= max_bytes AND pg_column_compression(payload) IS NOT NULL THEN
            v_size := pg_column_size(payload || '{}'::jsonb);  -- compressed: measure it unpacked
        END IF;
        IF jsonb_typeof(payload) <> 'object' THEN
            RETURN ARRAY['payload', format('must be a JSON object, not %s', jsonb_typeof(payload)),
                         'Wrap the value in an object, e.g. {"value": …}.'];
        ELSIF v_size > max_bytes THEN
            RETURN ARRAY['payload',
                         format('is %s bytes (jsonb size); the limit is %s bytes (queue.payload.max_bytes)',
                                v_size, max_bytes),
                         'Store large data elsewhere and pass a reference (an id or a URL) in the payload.'];
        ELSIF jsonb_path_exists(payload, format('strict $.**{%s}', max_depth + 1)::jsonpath) THEN
            RETURN ARRAY['payload',
                         format('is nested more than %s levels deep; the limit is %s (queue.payload.max_depth)',
                                max_depth, max_depth),
                         'Flatten the payload.'];
        END IF;
    END IF;

    IF priority IS NOT NULL AND (priority < -1000 OR priority > 1000 OR priority <> trunc(priority)) THEN
        RETURN ARRAY['priority', format('is %s; it must be a whole number from -1000 to 1000', priority),
                     'Higher runs first; pass NULL for 0.'];
    END IF;

    IF max_attempts IS NOT NULL
       AND (max_attempts < 1 OR max_attempts > 1000 OR max_attempts <> trunc(max_attempts)) THEN
        RETURN ARRAY['max_attempts', format('is %s; it must be a whole number from 1 to 1000', max_attempts),
                     'Pass NULL to use queue.retry.max_attempts.<kind> or .default.'];
    END IF;

    IF run_at IS NOT NULL AND (NOT isfinite(run_at) OR run_at > now() + interval '10 years') THEN
        RETURN ARRAY['run_at', format('is %s; it must be finite and at most 10 years ahead', run_at),
                     'Pass NULL to run as soon as possible.'];
    END IF;

    IF idempotency_key IS NOT NULL THEN
        IF idempotency_key = '' THEN
            RETURN ARRAY['idempotency_key', 'is empty', 'Pass NULL for no key.'];
        ELSIF octet_length(idempotency_key) > 255 THEN
            RETURN ARRAY['idempotency_key',
                         format('is %s bytes; the limit is 255 bytes', octet_length(idempotency_key)),
                         'Hash a long key, e.g. md5(…) or encode(sha256(…), ''hex'').'];
        END IF;
    END IF;

    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__enqueue_problem(text, jsonb, text, numeric, timestamptz, text, numeric, integer, integer) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__enqueue_problem(text, jsonb, text, numeric, timestamptz, text, numeric, integer, integer) IS
    'Private: validate one job for fn_job_enqueue / fn_job_enqueue_many. NULL when valid, else '
    'ARRAY[argument, problem, hint].';
