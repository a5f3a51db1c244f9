-- fn_job_queue_limit: set a queue's limits, enforced by every fn_job_claim from the next claim
-- on: max_in_progress (jobs in progress at once across all workers), and a rate of rate jobs per
-- per_seconds seconds (default 1), spread evenly (a token bucket, burst 5 % of a second's
-- worth). Each call sets both: NULL clears that limit. With neither and no per-key limits, the
-- queue's row goes and its claims take the unlimited path again. Refuses limits_disabled while
-- queue.limits.enabled is false (while false, claims ignore the limits stored).
CREATE OR REPLACE FUNCTION conveyor.fn_job_queue_limit(
    queue           text,
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
    PERFORM fn_job__limit_target('fn_job_queue_limit', fn_job_queue_limit.queue, true, NULL);
    v_per := fn_job__limit_check('fn_job_queue_limit', fn_job_queue_limit.max_in_progress,
                                 fn_job_queue_limit.rate, fn_job_queue_limit.per_seconds);

    INSERT INTO job_queue_limit AS l (queue, max_in_progress, rate, per_seconds, tokens, refilled_at)
    VALUES (fn_job_queue_limit.queue, fn_job_queue_limit.max_in_progress, fn_job_queue_limit.rate,
            v_per, fn_job__limit_tokens(1e9, now(), fn_job_queue_limit.rate, v_per, now()), now())
    ON CONFLICT ON CONSTRAINT job_queue_limit_pkey DO UPDATE
       SET max_in_progress = excluded.max_in_progress,
           rate = excluded.rate,
           per_seconds = excluded.per_seconds,
           tokens = CASE WHEN l.rate IS NOT DISTINCT FROM excluded.rate
                          AND l.per_seconds IS NOT DISTINCT FROM excluded.per_seconds
                         THEN l.tokens ELSE excluded.tokens END,
           refilled_at = CASE WHEN l.rate IS NOT DISTINCT FROM excluded.rate
                               AND l.per_seconds IS NOT DISTINCT FROM excluded.per_seconds
                              THEN l.refilled_at ELSE excluded.refilled_at END,
           updated_at = now(), updated_by = session_user;

    DELETE FROM job_queue_limit AS l
     WHERE l.queue = fn_job_queue_limit.queue
       AND l.max_in_progress IS NULL AND l.rate IS NULL AND l.key_max_in_progress IS NULL
       AND NOT EXISTS (SELECT 1 FROM job_key_limit AS kl WHERE kl.queue = l.queue);
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'queue', fn_job_queue_limit.queue, 'limited', false);
    END IF;
    RETURN jsonb_build_object('ok', true, 'queue', fn_job_queue_limit.queue, 'limited', true,
                              'max_in_progress', fn_job_queue_limit.max_in_progress,
                              'rate', fn_job_queue_limit.rate, 'per_seconds', v_per);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_queue_limit(text, integer, integer, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_queue_limit(text, integer, integer, numeric) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_queue_limit(text, integer, integer, numeric) IS
    'Set a queue''s limits, enforced inside fn_job_claim: max_in_progress (1..1000000 jobs in progress '
    'at once, across all workers; an expired lease holds its slot until reaped) and rate jobs '
    '(1..1000000) per per_seconds (0.001..31622400, default 1), spread evenly. NULL clears a limit; '
    'each call sets both. A limited queue''s claims also take keys (fn_job_enqueue''s '
    'concurrency_key) in turn. → {"ok":true,"queue":…,"limited":true,"max_in_progress":…,"rate":…,'
    '"per_seconds":…} or {"ok":true,"queue":…,"limited":false} when nothing is left. Bad input → '
    'SQLSTATE 22023. Refuses limits_disabled while queue.limits.enabled is false. '
    'Example: SELECT conveyor.fn_job_queue_limit(''email'', max_in_progress => 5, rate => 100, per_seconds => 1)';
