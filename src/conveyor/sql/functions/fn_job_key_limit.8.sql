-- fn_job_key_limit: set the limits of one concurrency_key of a queue (jobs enqueued with that
-- key): max_in_progress (1 = one at a time per key) and rate per per_seconds, as
-- fn_job_queue_limit does for the whole queue. With concurrency_key NULL, max_in_progress is the
-- cap of every key of the queue that has no row of its own (a rate needs a named key). NULL
-- clears a limit; each call sets both. Refuses limits_disabled while queue.limits.enabled is
-- false.
CREATE OR REPLACE FUNCTION conveyor.fn_job_key_limit(
    queue           text,
    concurrency_key text    DEFAULT NULL,
    max_in_progress integer DEFAULT NULL,
    rate            integer DEFAULT NULL,
    per_seconds     numeric DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_per numeric;
BEGIN
    IF NOT fn_config_enabled('queue.limits.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'limits_disabled',
                                  'flag', 'queue.limits.enabled');
    END IF;
    PERFORM fn_job__limit_target('fn_job_key_limit', fn_job_key_limit.queue, true, fn_job_key_limit.concurrency_key);
    v_per := fn_job__limit_check('fn_job_key_limit', fn_job_key_limit.max_in_progress,
                                 fn_job_key_limit.rate, fn_job_key_limit.per_seconds);
    IF fn_job_key_limit.concurrency_key IS NULL AND fn_job_key_limit.rate IS NOT NULL THEN
        RAISE EXCEPTION 'fn_job_key_limit: a rate needs a concurrency_key'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the key; NULL sets only max_in_progress for every key.';
    END IF;

    -- The queue's row is what makes its claims limited; it also holds the cap of every key.
    INSERT INTO job_queue_limit AS l (queue, key_max_in_progress)
    VALUES (fn_job_key_limit.queue,
            CASE WHEN fn_job_key_limit.concurrency_key IS NULL THEN fn_job_key_limit.max_in_progress END)
    ON CONFLICT ON CONSTRAINT job_queue_limit_pkey DO UPDATE
       SET key_max_in_progress = CASE WHEN fn_job_key_limit.concurrency_key IS NULL
                                      THEN excluded.key_max_in_progress
                                      ELSE l.key_max_in_progress END,
           updated_at = now(), updated_by = session_user;

    IF fn_job_key_limit.concurrency_key IS NOT NULL THEN
        IF fn_job_key_limit.max_in_progress IS NULL AND fn_job_key_limit.rate IS NULL THEN
            DELETE FROM job_key_limit AS kl
             WHERE kl.queue = fn_job_key_limit.queue
               AND kl.concurrency_key = fn_job_key_limit.concurrency_key;
        ELSE
            INSERT INTO job_key_limit AS kl
                   (queue, concurrency_key, max_in_progress, rate, per_seconds, tokens, refilled_at)
            VALUES (fn_job_key_limit.queue, fn_job_key_limit.concurrency_key,
                    fn_job_key_limit.max_in_progress, fn_job_key_limit.rate, v_per,
                    fn_job__limit_tokens(1e9, now(), fn_job_key_limit.rate, v_per, now()), now())
            ON CONFLICT ON CONSTRAINT job_key_limit_pkey DO UPDATE
               SET max_in_progress = excluded.max_in_progress,
                   rate = excluded.rate,
                   per_seconds = excluded.per_seconds,
                   tokens = excluded.tokens,
                   refilled_at = excluded.refilled_at,
                   updated_at = now(), updated_by = session_user;
        END IF;
    END IF;

    DELETE FROM job_queue_limit AS l
     WHERE l.queue = fn_job_key_limit.queue
       AND l.max_in_progress IS NULL AND l.rate IS NULL AND l.key_max_in_progress IS NULL
       AND NOT EXISTS (SELECT 1 FROM job_key_limit AS kl WHERE kl.queue = l.queue);
    RETURN jsonb_build_object('ok', true, 'queue', fn_job_key_limit.queue,
                              'concurrency_key', fn_job_key_limit.concurrency_key,
                              'max_in_progress', fn_job_key_limit.max_in_progress,
                              'rate', fn_job_key_limit.rate, 'per_seconds', v_per);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_key_limit(text, text, integer, integer, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_key_limit(text, text, integer, integer, numeric) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_key_limit(text, text, integer, integer, numeric) IS
    'Set the limits of one concurrency_key of a queue, enforced inside fn_job_claim: max_in_progress '
    '(1..1000000; 1 = one job of the key at a time) and rate per per_seconds (as fn_job_queue_limit). '
    'concurrency_key NULL: max_in_progress is the cap of every key without a row of its own (no '
    'rate). NULL clears a limit; each call sets both. → {"ok":true,"queue":…,"concurrency_key":…,'
    '"max_in_progress":…,"rate":…,"per_seconds":…}. Bad input → SQLSTATE 22023. Refuses '
    'limits_disabled while queue.limits.enabled is false. '
    'Example: SELECT conveyor.fn_job_key_limit(''email'', ''tenant-42'', max_in_progress => 1)';
