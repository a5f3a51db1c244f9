-- fn_job_claim: lease up to batch ready jobs to worker, in one statement. Order: priority DESC,
-- run_at, id across all the given queues. Each job gets attempts + 1 (counted at claim, so a job
-- that kills its worker still runs out of attempts), a new lease_token and
-- lease_expires_at = now() + lease. Rows other sessions hold are skipped (FOR UPDATE SKIP LOCKED),
-- so concurrent workers never get the same job.
--
-- Plan: for each queue the lateral subquery walks job_queue_claim_idx in its order (queue by
-- equality, then priority DESC, run_at, id), locks rows as it goes and stops after batch rows,
-- so the work is O(batch × queues), not O(backlog). (`queue = ANY(queues)` against that index
-- would have to sort every ready row first.) Ready rows of other kinds, and future-dated rows of
-- a HIGHER priority in the same queue, are stepped over on the way. With several queues a call
-- locks up to batch rows per queue and claims the best batch of them; the rest are unlocked at
-- commit, so call claim in its own short transaction.
CREATE OR REPLACE FUNCTION conveyor.fn_job_claim(
    worker        text,
    queues        text[]  DEFAULT NULL,
    kinds         text[]  DEFAULT NULL,
    batch         integer DEFAULT 1,
    lease_seconds integer DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_queues text[]  := coalesce(fn_job_claim.queues, ARRAY['default']);
    v_paused jsonb;
    v_batch  integer := coalesce(fn_job_claim.batch, 1);
    v_lease  integer := fn_job_claim.lease_seconds;
    v_jobs   jsonb;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;

    IF fn_job_claim.worker IS NULL OR fn_job_claim.worker = '' OR octet_length(fn_job_claim.worker) > 255 THEN
        RAISE EXCEPTION 'fn_job_claim: worker is required (1 to 255 bytes)'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the worker, e.g. host:pid; it is recorded in leased_by.';
    END IF;
    IF cardinality(v_queues) = 0 OR array_position(v_queues, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'fn_job_claim: queues must name at least one queue and contain no NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL to claim from ''default''.';
    END IF;
    IF fn_job_claim.kinds IS NOT NULL
       AND (cardinality(fn_job_claim.kinds) = 0 OR array_position(fn_job_claim.kinds, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'fn_job_claim: kinds must name at least one kind and contain no NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL to claim jobs of any kind.';
    END IF;
    IF v_batch NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'fn_job_claim: batch is %; it must be from 1 to 1000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Claim at most 1000 jobs per call.';
    END IF;
    IF v_lease IS NULL THEN
        v_lease := least(greatest(fn_job__config_number('queue.lease.default_seconds', 60), 1), 86400);
    ELSIF v_lease NOT BETWEEN 1 AND 86400 THEN
        RAISE EXCEPTION 'fn_job_claim: lease_seconds is %; it must be from 1 to 86400', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for queue.lease.default_seconds; extend long jobs with fn_job_extend_lease.';
    END IF;

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
                   AND (fn_job_claim.kinds IS NULL OR jq.kind = ANY (fn_job_claim.kinds))
                 ORDER BY jq.priority DESC, jq.run_at, jq.id
                 LIMIT v_batch
                   FOR UPDATE OF jq SKIP LOCKED
               ) AS c
         ORDER BY c.priority DESC, c.run_at, c.id
         LIMIT v_batch
    ), claimed AS (
        UPDATE job_queue AS jq
           SET status = 'in_progress',
               attempts = jq.attempts + 1,
               lease_token = gen_random_uuid(),
               leased_by = fn_job_claim.worker,
               lease_expires_at = now() + make_interval(secs => v_lease),
               started_at = now()
          FROM picked AS p
         WHERE jq.id = p.id
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
               -- Same rule as fn_job__max_attempts, joined set-wise instead of called per row.
               'max_attempts', coalesce(
                   c.max_attempts,
                   CASE WHEN jsonb_typeof(kind_cfg.value) = 'number'
                             AND kind_cfg.value::numeric BETWEEN 1 AND 1000
                        THEN kind_cfg.value::numeric::integer END,
                   CASE WHEN jsonb_typeof(default_cfg.value) = 'number'
                             AND default_cfg.value::numeric BETWEEN 1 AND 1000
                        THEN default_cfg.value::numeric::integer END,
                   5),
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
REVOKE ALL ON FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_claim(text, text[], text[], integer, integer) IS
    'Lease up to batch (1..1000, default 1) ready jobs from queues (default {default}), optionally '
    'only of kinds, for lease_seconds (1..86400, default queue.lease.default_seconds). → '
    '{"ok":true,"jobs":[{"job_id","queue","kind","payload","priority","attempts","max_attempts",'
    '"lease_token","lease_expires_at","run_at","created_at"}, …]} ordered by priority DESC, run_at, '
    'id; jobs is [] when nothing is ready. Refuses job_substrate_disabled while '
    'queue.job_substrate.enabled is false. '
    'Example: SELECT conveyor.fn_job_claim(''host1:4242'', queues => ARRAY[''email''], batch => 10)';
