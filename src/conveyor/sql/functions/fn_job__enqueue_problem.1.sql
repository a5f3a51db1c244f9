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
--
-- One CASE in a LANGUAGE sql function without a SET clause, on purpose: the planner inlines it
-- into fn_job_enqueue_many's validation query, which then checks the whole batch set-wise
-- instead of entering plpgsql (and switching search_path) once per element. That query is
-- planned once per call (force_custom_plan), so the body is parsed once per batch; fn_job_enqueue
-- calls it once per job. The body names only built-ins (resolved on the caller's pinned
-- search_path, pg_catalog first). Measured: bench/results/perf3-20261203.md.
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
LANGUAGE sql
STABLE
AS $$
SELECT CASE
    WHEN kind IS NULL OR kind = '' THEN
         ARRAY['kind', 'is required',
               'Name the job kind with letters, digits and _ . : / -, starting with a letter or '
               'digit, at most 128 bytes (e.g. ''email.send'').']
    WHEN octet_length(kind) > 128 THEN
         ARRAY['kind', format('is %s bytes; the limit is 128 bytes', octet_length(kind)),
               'Name the job kind with letters, digits and _ . : / -, starting with a letter or '
               'digit, at most 128 bytes (e.g. ''email.send'').']
    WHEN kind !~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]*$' THEN
         ARRAY['kind', format('%L does not match ^[A-Za-z0-9][A-Za-z0-9_.:/-]*$', kind),
               'Name the job kind with letters, digits and _ . : / -, starting with a letter or '
               'digit, at most 128 bytes (e.g. ''email.send'').']
    WHEN octet_length(queue) > 63 THEN  -- NULL queue: NULL, not true
         ARRAY['queue', format('is %s bytes; the limit is 63 bytes', octet_length(queue)),
               'Use lower-case letters, digits and _ . -, starting with a letter or digit, at '
               'most 63 bytes; pass NULL for ''default''.']
    WHEN queue !~ '^[a-z0-9][a-z0-9_.-]*$' THEN
         ARRAY['queue', format('%L does not match ^[a-z0-9][a-z0-9_.-]*$', queue),
               'Use lower-case letters, digits and _ . -, starting with a letter or digit, at '
               'most 63 bytes; pass NULL for ''default''.']
    WHEN jsonb_typeof(payload) <> 'object' THEN
         ARRAY['payload', format('must be a JSON object, not %s', jsonb_typeof(payload)),
               'Wrap the value in an object, e.g. {"value": …}.']
    WHEN pg_column_size(payload) > max_bytes
         OR (pg_column_compression(payload) IS NOT NULL
             AND pg_column_size(payload || '{}'::jsonb) > max_bytes) THEN  -- compressed: unpacked
         ARRAY['payload',
               format('is %s bytes (jsonb size); the limit is %s bytes (queue.payload.max_bytes)',
                      CASE WHEN pg_column_size(payload) > max_bytes THEN pg_column_size(payload)
                           ELSE pg_column_size(payload || '{}'::jsonb) END,
                      max_bytes),
               'Store large data elsewhere and pass a reference (an id or a URL) in the payload.']
    WHEN jsonb_path_exists(payload, format('strict $.**{%s}', max_depth + 1)::jsonpath) THEN
         ARRAY['payload',
               format('is nested more than %s levels deep; the limit is %s (queue.payload.max_depth)',
                      max_depth, max_depth),
               'Flatten the payload.']
    WHEN priority < -1000 OR priority > 1000 OR priority <> trunc(priority) THEN
         ARRAY['priority', format('is %s; it must be a whole number from -1000 to 1000', priority),
               'Higher runs first; pass NULL for 0.']
    WHEN max_attempts < 1 OR max_attempts > 1000 OR max_attempts <> trunc(max_attempts) THEN
         ARRAY['max_attempts', format('is %s; it must be a whole number from 1 to 1000', max_attempts),
               'Pass NULL to use queue.retry.max_attempts.<kind> or .default.']
    WHEN NOT isfinite(run_at) OR run_at > now() + interval '10 years' THEN
         ARRAY['run_at', format('is %s; it must be finite and at most 10 years ahead', run_at),
               'Pass NULL to run as soon as possible.']
    WHEN idempotency_key = '' THEN
         ARRAY['idempotency_key', 'is empty', 'Pass NULL for no key.']
    WHEN octet_length(idempotency_key) > 255 THEN
         ARRAY['idempotency_key',
               format('is %s bytes; the limit is 255 bytes', octet_length(idempotency_key)),
               'Hash a long key, e.g. md5(…) or encode(sha256(…), ''hex'').']
END
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__enqueue_problem(text, jsonb, text, numeric, timestamptz, text, numeric, integer, integer) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__enqueue_problem(text, jsonb, text, numeric, timestamptz, text, numeric, integer, integer) IS
    'Private: validate one job for fn_job_enqueue / fn_job_enqueue_many. NULL when valid, else '
    'ARRAY[argument, problem, hint].';
