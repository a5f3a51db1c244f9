-- fn_job__claim_rows: private helper of every fn_job_claim version, the claim itself: lease up to
-- batch ready jobs of queues to worker for lease_seconds, in one statement, and answer
-- {"ok": true, "jobs": [...]} as fn_job_claim does. Arguments are checked and defaulted by the
-- caller (fn_job__claim_validate). Two kind filters, both NULL for "any kind": kinds (the
-- caller's own list) and, on top, kind_exact / kind_prefixes (a job's kind is one of kind_exact
-- or starts with one of kind_prefixes; phase 4's executor subscriptions), stepped over on the
-- same index walk. Order: priority DESC, run_at, id across all the given queues. Each job gets
-- attempts + 1 (counted at claim, so a job that kills its worker still runs out of attempts), a
-- new lease_token and lease_expires_at = now() + lease. Rows other sessions hold are skipped
-- (FOR UPDATE SKIP LOCKED), so concurrent workers never get the same job.
--
-- Plan: for each queue the lateral subquery walks job_queue_claim_idx in its order (queue by
-- equality, then priority DESC, run_at, id), locks rows as it goes and stops after batch rows,
-- so the work is O(batch × queues), not O(backlog). (`queue = ANY(queues)` against that index
-- would have to sort every ready row first.) Ready rows of other kinds, and future-dated rows of
-- a HIGHER priority in the same queue, are stepped over on the way. With several queues a call
-- locks up to batch rows per queue and claims the best batch of them; the rest are unlocked at
-- commit, so call claim in its own short transaction. plpgsql, so the statement's plan is cached
-- per session, and generic (plan_cache_mode): a custom plan was re-planned on every call (the
-- generic estimate for LIMIT batch never looked cheaper), ~0.5 ms a claim, and the UPDATE finds
-- the picked rows by id = ANY (ARRAY(…)) so the generic plan probes the primary key instead of
-- hash-joining a sequential scan (bench/results/perf2-20261203.md). JIT off: the generic plan
-- reckons a LIMIT parameter at a tenth of the queue, so past ~300,000 ready jobs its cost passed
-- jit_above_cost and every claim JIT-compiled its statement, ~18 ms against ~2 ms of work
-- (bench/results/perf4-20261204.md).
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
    v_queues text[] := fn_job__claim_rows.queues;
    v_paused jsonb;
    v_jobs   jsonb;
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

    WITH picked AS (
        SELECT c.id
          FROM (SELECT DISTINCT u.name FROM unnest(v_queues) AS u(name)) AS q
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
                 LIMIT fn_job__claim_rows.batch
                   FOR UPDATE OF jq SKIP LOCKED
               ) AS c
         ORDER BY c.priority DESC, c.run_at, c.id
         LIMIT fn_job__claim_rows.batch
    ), claimed AS (
        UPDATE job_queue AS jq
           SET status = 'in_progress',
               attempts = jq.attempts + 1,
               lease_token = gen_random_uuid(),
               leased_by = fn_job__claim_rows.worker,
               lease_expires_at = now() + make_interval(secs => fn_job__claim_rows.lease_seconds),
               started_at = now()
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

    RETURN jsonb_build_object('ok', true, 'jobs', v_jobs);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__claim_rows(text, text[], text[], integer, integer, text[], text[]) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__claim_rows(text, text[], text[], integer, integer, text[], text[]) IS
    'Private: the claim of fn_job_claim (every version) with checked arguments: lease up to batch ready jobs of queues (paused ones left out), optionally only of kinds and of kind_exact / kind_prefixes; answer {ok, jobs}.';
