-- fn_job__claim_limited: private helper of fn_job__claim_rows (phase 8): pick and lock up to
-- batch ready jobs of one queue that has a job_queue_limit row, within its limits, and return
-- their ids (the caller's UPDATE leases them in the same transaction), and wait_seconds when the
-- queue's rate held the claim back (else NULL): how long until the bucket is full again.
-- The queue's limit row is locked FOR UPDATE, so limited claims of one queue count, lease and
-- commit one after the other: the in-progress figure each one reads includes every earlier
-- claim, and no number of workers can overrun a cap. The rows are picked before that lock (and
-- an empty queue takes none); keys' own caps and rates are checked under it, and when the rows
-- would take a key past its own, they are picked again under the lock, with the keys' counts and
-- tokens. In progress means status in_progress: a job whose lease expired keeps its slot until
-- fn_job_lease_reaper requeues it.
--   allowance = least(batch, max_in_progress − in progress, queue tokens)
--   per key   = least(allowance, key cap − key in progress, key tokens); the key cap is the
--               key's job_key_limit row or the queue's key_max_in_progress (every key)
-- Fairness (fn_job__claim_keys): keys with backlog are taken in turn, round robin from the
-- queue's cursor_key (the last key served), a turn being at most an eighth of the claim; each
-- key's rows are locked as they are read, so claims at once take a key's next rows. A claim
-- looks at about 10 keys (more only when those leave it short: a loose index scan of
-- job_queue_key_idx), so it costs O(batch), not O(keys) or O(backlog).
CREATE OR REPLACE FUNCTION conveyor.fn_job__claim_limited(
    queue         text,
    kinds         text[],
    batch         integer,
    kind_exact    text[],
    kind_prefixes text[],
    OUT ids       bigint[],
    OUT wait_seconds numeric
) RETURNS record
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
-- Its plans and its helpers' are generic (fn_job__claim_rows pins them), made without the
-- queue's or the cursor's value, and a table's statistics can make a bitmap scan of a whole key
-- or queue and a sort look cheap (all keys NULL, say): every read here must be an ordered index
-- walk that stops after a few rows. Parallel and JIT-compiled plans cost more than the claim.
SET enable_bitmapscan = off
SET max_parallel_workers_per_gather = 0
SET jit = off
AS $$
DECLARE
    v_limit   job_queue_limit%ROWTYPE;
    v_now     timestamptz;
    v_tokens  numeric;
    v_allow   integer := fn_job__claim_limited.batch;
    v_running bigint;
    v_ids     bigint[];
    v_cand    bigint[];
    v_last    text;
    v_by_rate boolean;
    v_counted boolean := false;
    v_key_caps boolean;
    v_key_rows boolean;
    v_pre     integer;
BEGIN
    -- First without the lock: the limits as committed now, and the rows to claim.
    SELECT l.* INTO v_limit
      FROM job_queue_limit AS l
     WHERE l.queue = fn_job__claim_limited.queue;
    IF NOT FOUND THEN
        RETURN;  -- ids NULL: no limit (any more), the caller claims the queue unlimited
    END IF;
    -- At most what the cap or the bucket could ever allow (least ignores NULLs).
    v_pre := least(fn_job__claim_limited.batch, v_limit.max_in_progress,
                   CASE WHEN v_limit.rate IS NOT NULL
                        THEN ceil(fn_job__limit_burst(v_limit.rate, v_limit.per_seconds)) END);
    -- Keys with limits of their own, as committed now (one set meanwhile counts from the next
    -- claim on): without a job_key_limit row the second probe is not run.
    v_key_rows := EXISTS (SELECT 1 FROM job_key_limit AS kl
                           WHERE kl.queue = fn_job__claim_limited.queue);
    v_key_caps := v_limit.key_max_in_progress IS NOT NULL
                  OR (v_key_rows AND EXISTS (SELECT 1 FROM job_key_limit AS kl
                                              WHERE kl.queue = fn_job__claim_limited.queue
                                                AND kl.max_in_progress IS NOT NULL));
    -- The rows in fair order, keys' own limits not applied yet (they are read under the lock):
    -- from the cursor as committed now, so claims running at once start from the same key and
    -- take its next rows (a hint of fairness; the cursor moves under the lock).
    SELECT k.ids, k.last_key INTO v_cand, v_last
      FROM fn_job__claim_keys(fn_job__claim_limited.queue, fn_job__claim_limited.kinds,
                              fn_job__claim_limited.kind_exact,
                              fn_job__claim_limited.kind_prefixes, v_limit.cursor_key, v_pre,
                              NULL, false, clock_timestamp()) AS k;
    IF v_cand IS NULL THEN
        -- No key has backlog: the queue's next rows in claim order, locked as the unlimited
        -- claim locks them (one index walk, no ranking, no second pass), before the limit's
        -- lock, so that claims wait for each other only to count and lease. At most what the
        -- cap or the bucket could ever allow; the allowance below takes the first of them, the
        -- rest are unlocked at commit (meanwhile other claims skip them, as claims always do).
        v_cand := ARRAY(
            SELECT jq.id
              FROM job_queue AS jq
             WHERE jq.status = 'queued'
               AND jq.queue = fn_job__claim_limited.queue
               AND jq.run_at <= now()
               AND (fn_job__claim_limited.kinds IS NULL OR jq.kind = ANY (fn_job__claim_limited.kinds))
               AND (fn_job__claim_limited.kind_exact IS NULL
                    OR jq.kind = ANY (fn_job__claim_limited.kind_exact)
                    OR EXISTS (SELECT 1 FROM unnest(fn_job__claim_limited.kind_prefixes) AS sp(prefix)
                                WHERE starts_with(jq.kind, sp.prefix)))
             ORDER BY jq.priority DESC, jq.run_at, jq.id
             LIMIT v_pre
               FOR UPDATE OF jq SKIP LOCKED);
    END IF;
    IF cardinality(v_cand) = 0 THEN
        ids := '{}';  -- nothing ready: no lock taken, no token spent
        RETURN;
    END IF;

    SELECT l.* INTO v_limit
      FROM job_queue_limit AS l
     WHERE l.queue = fn_job__claim_limited.queue
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- ids NULL: the limit went away meanwhile, the caller claims the queue unlimited
    END IF;
    v_now := clock_timestamp();  -- after the lock: the previous holder's tokens are spent

    v_tokens := fn_job__limit_tokens(v_limit.tokens, v_limit.refilled_at, v_limit.rate,
                                     v_limit.per_seconds, v_now);
    IF v_tokens IS NOT NULL THEN
        v_allow := least(v_allow, floor(v_tokens)::integer);
    END IF;
    IF v_limit.max_in_progress IS NOT NULL AND v_allow > 0 THEN
        -- Counting the jobs in progress is the costly part under the lock (every job ever in
        -- progress since the last vacuum has an entry in the index it walks), so the row keeps
        -- an upper bound: the count at bound_at plus every job claimed since, all by claims that
        -- held this lock (only claims put jobs in progress; finishing, requeueing and cancelling
        -- only take them out). While the bound leaves room for the whole allowance it is used as
        -- the count; else, or once queue.limits.enabled changed (claims ignored the limits
        -- meanwhile), the claim counts.
        v_running := v_limit.running_bound;
        IF v_running IS NULL OR v_running + v_allow > v_limit.max_in_progress
           OR NOT coalesce(v_limit.bound_at > (SELECT dc.updated_at FROM dot_config AS dc
                                                WHERE dc.key = 'queue.limits.enabled'), false) THEN
            SELECT count(*) INTO v_running
              FROM job_queue AS jq
             WHERE jq.status = 'in_progress' AND jq.queue = fn_job__claim_limited.queue;
            v_counted := true;
        END IF;
        v_allow := least(v_allow, greatest(v_limit.max_in_progress - v_running, 0)::integer);
    END IF;
    -- The rate holds this claim back when the tokens are what bounds it: then wait_seconds says
    -- when the bucket is full again, so the worker claims then rather than at its next poll
    -- (fewer claims, each taking a burst, and no tokens lost to a full bucket meanwhile).
    v_by_rate := v_tokens IS NOT NULL AND v_allow = floor(v_tokens) AND v_allow < fn_job__claim_limited.batch;

    IF v_allow <= 0 THEN
        v_ids := '{}';
    ELSE  -- the first of the rows picked before the lock, as allowed
        v_ids := v_cand[1:v_allow];
        IF (v_key_caps OR v_key_rows) AND EXISTS (
                SELECT 1
                  FROM (SELECT jq.concurrency_key AS key, count(*) AS n
                          FROM job_queue AS jq
                         WHERE jq.id = ANY (v_ids) AND jq.concurrency_key IS NOT NULL
                         GROUP BY jq.concurrency_key) AS t
                  LEFT JOIN job_key_limit AS kl
                         ON kl.queue = fn_job__claim_limited.queue AND kl.concurrency_key = t.key
                 WHERE t.n > least(
                           coalesce(kl.max_in_progress, v_limit.key_max_in_progress)
                           - (SELECT count(*) FROM job_queue AS r
                               WHERE r.status = 'in_progress' AND r.queue = fn_job__claim_limited.queue
                                 AND r.concurrency_key = t.key),
                           floor(fn_job__limit_tokens(kl.tokens, kl.refilled_at, kl.rate,
                                                      kl.per_seconds, v_now)))) THEN
            -- A key would pass its own cap or rate: pick again under the lock, with the keys'
            -- counts and tokens (the rows already locked come back to this transaction).
            SELECT k.ids, k.last_key INTO v_ids, v_last
              FROM fn_job__claim_keys(fn_job__claim_limited.queue, fn_job__claim_limited.kinds,
                                      fn_job__claim_limited.kind_exact,
                                      fn_job__claim_limited.kind_prefixes, v_limit.cursor_key,
                                      v_allow, v_limit.key_max_in_progress, v_key_caps, v_now) AS k;
            v_ids := coalesce(v_ids, '{}');  -- NULL: the keyed backlog went meanwhile
        ELSIF v_last IS NOT NULL AND cardinality(v_ids) < cardinality(v_cand) THEN
            SELECT coalesce(jq.concurrency_key, '') INTO v_last FROM job_queue AS jq
             WHERE jq.id = v_ids[cardinality(v_ids)];
        END IF;
    END IF;
    ids := v_ids;
    IF v_by_rate AND cardinality(v_ids) = v_allow THEN  -- all it allowed: more are waiting
        -- the time the bucket takes to refill to its burst from what this claim left
        wait_seconds := (fn_job__limit_burst(v_limit.rate, v_limit.per_seconds)
                         - (v_tokens - cardinality(v_ids))) * v_limit.per_seconds / v_limit.rate;
    END IF;
    IF cardinality(v_ids) = 0 THEN
        RETURN;  -- nothing claimed: no token spent, no bound to raise
    END IF;

    IF v_tokens IS NOT NULL OR v_last IS NOT NULL OR v_running IS NOT NULL THEN
        UPDATE job_queue_limit AS l
           SET tokens = v_tokens - cardinality(v_ids),  -- NULL without a rate
               refilled_at = v_now,
               cursor_key = coalesce(v_last, l.cursor_key),
               running_bound = v_running + cardinality(v_ids),  -- NULL without a cap
               bound_at = CASE WHEN v_counted THEN v_now ELSE l.bound_at END
         WHERE l.queue = fn_job__claim_limited.queue;
    END IF;
    IF NOT v_key_rows THEN
        RETURN;  -- no key has a bucket to spend
    END IF;
    UPDATE job_key_limit AS kl
       SET tokens = fn_job__limit_tokens(kl.tokens, kl.refilled_at, kl.rate, kl.per_seconds, v_now) - t.n,
           refilled_at = v_now
      FROM (SELECT jq.concurrency_key AS key, count(*) AS n
              FROM job_queue AS jq
             WHERE jq.id = ANY (v_ids) AND jq.concurrency_key IS NOT NULL
             GROUP BY jq.concurrency_key) AS t
     WHERE kl.queue = fn_job__claim_limited.queue AND kl.concurrency_key = t.key
       AND kl.rate IS NOT NULL;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__claim_limited(text, text[], integer, text[], text[]) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__claim_limited(text, text[], integer, text[], text[]) IS
    'Private: pick and lock up to batch ready jobs of one limited queue within its caps and rates (queue and key), keys taken round robin; returns their ids (NULL when the queue has no limit row) and wait_seconds (when the queue''s rate held it back, the seconds until its bucket is full).';
