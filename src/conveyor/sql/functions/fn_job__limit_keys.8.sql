-- fn_job__limit_keys: private helper of fn_job__claim_keys (phase 8): the keys of a limited
-- queue with queued jobs, in key order from the one after `after` (the queue's cursor_key: the
-- last key served), at most n. When the walk passes the last key it wraps: a NULL marks the
-- turn of jobs without a key (their place in the order is before the first key, cursor ''),
-- then the keys from the first up to `after`. So a NULL in the answer means every key with
-- backlog is in it. '{}' when no key has backlog. One descent of job_queue_key_idx per key (a
-- loose index scan): O(n), not O(keys) or O(backlog), whatever the table's statistics say.
CREATE OR REPLACE FUNCTION conveyor.fn_job__limit_keys(
    queue text,
    after text,
    n     integer
) RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, conveyor, pg_temp
-- Its plans are generic (fn_job__claim_rows pins them; fn_job__claim_limited, its caller's
-- caller, leaves no bitmap, parallel or JIT plan): no sort either, or a step could sort every
-- row of the keys after the cursor; only the ordered index walk is left.
SET enable_sort = off
AS $$
DECLARE
    v_after text := coalesce(fn_job__limit_keys.after, '');
    v_keys  text[] := '{}';
    v_from  text := v_after;  -- walk keys > v_from (and <= v_to when set)
    v_to    text;
BEGIN
    LOOP  -- after the cursor to the last key; wrapped, from the first key up to the cursor
        v_keys := v_keys || ARRAY(
            WITH RECURSIVE k(key) AS (
                (SELECT jq.concurrency_key
                   FROM job_queue AS jq
                  WHERE jq.status = 'queued' AND jq.queue = fn_job__limit_keys.queue
                    AND jq.concurrency_key IS NOT NULL AND jq.concurrency_key > v_from
                  ORDER BY jq.concurrency_key
                  LIMIT 1)
                UNION ALL
                SELECT (SELECT jq.concurrency_key
                          FROM job_queue AS jq
                         WHERE jq.status = 'queued' AND jq.queue = fn_job__limit_keys.queue
                           AND jq.concurrency_key IS NOT NULL AND jq.concurrency_key > k.key
                         ORDER BY jq.concurrency_key
                         LIMIT 1)
                  FROM k
                 WHERE k.key IS NOT NULL AND (v_to IS NULL OR k.key < v_to)
            )
            SELECT k.key FROM k WHERE k.key IS NOT NULL AND (v_to IS NULL OR k.key <= v_to)
             LIMIT fn_job__limit_keys.n - cardinality(v_keys));
        EXIT WHEN cardinality(v_keys) >= fn_job__limit_keys.n OR v_to IS NOT NULL;
        v_keys := v_keys || NULL::text;  -- wrapped: the keyless jobs' turn, then from the first key
        EXIT WHEN v_after = '' OR cardinality(v_keys) >= fn_job__limit_keys.n;
        v_from := '';
        v_to := v_after;
    END LOOP;
    IF cardinality(v_keys) = 1 AND v_keys[1] IS NULL THEN
        RETURN '{}';  -- only the wrap: no key has backlog
    END IF;
    RETURN v_keys;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__limit_keys(text, text, integer) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__limit_keys(text, text, integer) IS
    'Private: up to n keys of a queue with queued jobs, in key order after a cursor, wrapping (a NULL marks the keyless jobs'' turn); ''{}'' when no key has backlog.';
