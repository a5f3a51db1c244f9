-- fn_job__claim_rows, phase 8 version (phase 8's ddl.down restores the .1 file): phase 1's claim
-- plus limits. Queues of the call that have a job_queue_limit row (while queue.limits.enabled)
-- are picked by fn_job__claim_limited, within their caps and rates and fairly between keys; the
-- others by the same per-queue index walk as before, in the same statement that leases them all.
-- With no limit row for the claimed queues (one probe of job_queue_limit's primary key) the
-- statement is phase 1's: v_ids is NULL and v_plain is every queue. Limited queues are picked
-- before the plain ones, so in a call mixing both the order across queues is per queue. When a
-- limited queue's rate held the claim back, the answer's limit_wait_seconds says how long until
-- its bucket is full again (the shortest of them): the worker claims again then.
-- The rest is as in the .1 file: plan, answer and locking notes there hold here.
CREATE OR REPLACE FUNCTION conveyor.fn_job__claim_rows(
    worker        text,
    queues        text[],
    kinds         text[],
    batch         integer,
    lease_seconds integer,
    kind_exact    text[],
    kind_prefixes text[]
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    v_queues  text[] := fn_job__claim_rows.queues;
    v_paused  jsonb;
    v_jobs    jsonb;
    v_limited text[];
    v_ids     bigint[];
    v_more    bigint[];
    v_plain   text[];
    v_left    integer := fn_job__claim_rows.batch;
    v_queue   text;
    v_started timestamptz;
    v_wait    numeric;
BEGIN
    -- Paused queues (queue.paused_queues, see fn_job_queue_pause) are left out of this claim;
    -- the worker keeps running and claims from them again once they are resumed.
    v_paused := fn_config_get('queue.paused_queues');
    IF jsonb_typeof(v_paused) = 'array' AND jsonb_array_length(v_paused) > 0 THEN
        v_queues := ARRAY(SELECT u.name FROM unnest(v_queues) AS u(name) WHERE NOT v_paused ? u.name);
        IF cardinality(v_queues) = 0 THEN
            RETURN jsonb_build_object('ok', true, 'jobs', '[]'::jsonb, 'paused', true);
        END IF;
    END IF;

    v_plain := v_queues;
    -- In queue order: claims of several limited queues take their locks in one order (no deadlock).
    v_limited := ARRAY(SELECT l.queue FROM job_queue_limit AS l WHERE l.queue = ANY (v_queues)
                        ORDER BY l.queue);
    IF cardinality(v_limited) > 0 AND fn_config_enabled('queue.limits.enabled') THEN
        v_ids := '{}';
        FOREACH v_queue IN ARRAY v_limited LOOP
            EXIT WHEN v_left <= 0;
            SELECT l.ids, least(v_wait, l.wait_seconds) INTO v_more, v_wait
              FROM fn_job__claim_limited(v_queue, fn_job__claim_rows.kinds, v_left,
                                         fn_job__claim_rows.kind_exact,
                                         fn_job__claim_rows.kind_prefixes) AS l;
            IF v_more IS NOT NULL THEN
                v_ids := v_ids || v_more;
                v_left := v_left - cardinality(v_more);
                v_plain := array_remove(v_plain, v_queue);
            END IF;
        END LOOP;
        -- Read after the in-progress counts: a job counted as finished finished before this
        -- one started, so started_at / finished_at show the cap held (now() is the transaction's
        -- start, before the wait for the limit row's lock).
        v_started := clock_timestamp();
    END IF;

    WITH picked AS (
        (SELECT c.id
          FROM (SELECT DISTINCT u.name FROM unnest(v_plain) AS u(name)) AS q
         CROSS JOIN LATERAL (
                SELECT jq.id, jq.priority, jq.run_at
                  FROM job_queue AS jq
                 WHERE jq.status = 'queued'
                   AND jq.queue = q.name
                   AND jq.run_at <= now()
                   AND (fn_job__claim_rows.kinds IS NULL OR jq.kind = ANY (fn_job__claim_rows.kinds))
                   AND (fn_job__claim_rows.kind_exact IS NULL
                        OR jq.kind = ANY (fn_job__claim_rows.kind_exact)
                        OR EXISTS (SELECT 1 FROM unnest(fn_job__claim_rows.kind_prefixes) AS sp(prefix)
                                    WHERE starts_with(jq.kind, sp.prefix)))
                 ORDER BY jq.priority DESC, jq.run_at, jq.id
                 LIMIT v_left
                   FOR UPDATE OF jq SKIP LOCKED
               ) AS c
         ORDER BY c.priority DESC, c.run_at, c.id
         LIMIT v_left)
        UNION ALL
        SELECT u.id FROM unnest(v_ids) AS u(id)  -- the limited queues' rows, locked already
    ), claimed AS (
        UPDATE job_queue AS jq
           SET status = 'in_progress',
               attempts = jq.attempts + 1,
               lease_token = gen_random_uuid(),
               leased_by = fn_job__claim_rows.worker,
               lease_expires_at = now() + make_interval(secs => fn_job__claim_rows.lease_seconds),
               started_at = coalesce(v_started, now())
         WHERE jq.id = ANY (ARRAY(SELECT p.id FROM picked AS p))
        RETURNING jq.id, jq.queue, jq.kind, jq.payload, jq.priority, jq.attempts, jq.max_attempts,
                  jq.lease_token, jq.lease_expires_at, jq.run_at, jq.created_at
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'job_id', c.id,
               'queue', c.queue,
               'kind', c.kind,
               'payload', c.payload,
               'priority', c.priority,
               'attempts', c.attempts,
               -- The settings are joined set-wise for the batch; the rule is fn_job__attempt_limit.
               'max_attempts', fn_job__attempt_limit(c.max_attempts, kind_cfg.value, default_cfg.value),
               'lease_token', c.lease_token,
               'lease_expires_at', c.lease_expires_at,
               'run_at', c.run_at,
               'created_at', c.created_at)
             ORDER BY c.priority DESC, c.run_at, c.id), '[]'::jsonb)
      INTO v_jobs
      FROM claimed AS c
      LEFT JOIN dot_config AS kind_cfg ON kind_cfg.key = 'queue.retry.max_attempts.' || c.kind
      LEFT JOIN dot_config AS default_cfg ON default_cfg.key = 'queue.retry.max_attempts.default';

    IF v_wait IS NOT NULL THEN  -- a limited queue's rate held the claim back (phase 8)
        RETURN jsonb_build_object('ok', true, 'jobs', v_jobs,
                                  'limit_wait_seconds', round(v_wait, 3));
    END IF;
    RETURN jsonb_build_object('ok', true, 'jobs', v_jobs);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__claim_rows(text, text[], text[], integer, integer, text[], text[]) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__claim_rows(text, text[], text[], integer, integer, text[], text[]) IS
    'Private: the claim of fn_job_claim (every version) with checked arguments: lease up to batch ready jobs of queues (paused ones left out; limited ones within their limits, phase 8), optionally only of kinds and of kind_exact / kind_prefixes; answer {ok, jobs} (and limit_wait_seconds when a rate held it back, phase 8).';
