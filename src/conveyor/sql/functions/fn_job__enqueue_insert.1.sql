-- fn_job__enqueue_insert: private helper of fn_job_enqueue_many: write a validated batch (one
-- array per column, in input order) and answer {"ok":true,"job_ids":[… in input order …],
-- "created":n}. Phase 1 has no concurrency_key column: an element with one is refused (22023,
-- naming jobs[i]) before anything is written; phase 8's version (the .8 file) stores it.
--
-- Two paths. A batch without idempotency keys (the common case) is one plain INSERT … SELECT:
-- no ON CONFLICT (whose speculative insertion probes the arbiter index row by row), no window
-- over the keys, no join back to the input. A batch with any key keeps fn_job_enqueue's rules:
-- an element whose key a live job holds reports that job; a key repeated within the batch
-- inserts the first element and reports its id for the later ones.
CREATE OR REPLACE FUNCTION conveyor.fn_job__enqueue_insert(
    kinds            text[],
    payloads         jsonb[],
    queues           text[],
    priorities       numeric[],
    run_ats          timestamptz[],
    idempotency_keys text[],
    max_attempts     numeric[],
    concurrency_keys text[]
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, conveyor, pg_temp
-- Custom plans every call: after five calls plpgsql would switch to a generic plan whose joins
-- of the CTEs by id become nested loops over the whole batch (17 ms → 62 ms per 1,000 jobs).
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_bad      integer;
    v_ids      bigint[];
    v_created  integer;
    v_resolved boolean;
BEGIN
    SELECT u.ord - 1 INTO v_bad
      FROM unnest(fn_job__enqueue_insert.concurrency_keys) WITH ORDINALITY AS u(concurrency_key, ord)
     WHERE u.concurrency_key IS NOT NULL
     ORDER BY u.ord
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'fn_job_enqueue_many: jobs[%].concurrency_key needs phase 8 (limits), which is not applied',
                        v_bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Phase 8 stores concurrency keys (conveyor phase apply 8); until then leave the key out.';
    END IF;

    IF array_remove(fn_job__enqueue_insert.idempotency_keys, NULL) = '{}' THEN
        -- No keys: unnest yields the elements in input order and each draws the next id, so the
        -- ids sorted are the answer in input order (FIFO, as with keys).
        WITH inserted AS (
            INSERT INTO job_queue AS jq
                   (id, queue, kind, payload, priority, status, run_at, max_attempts)
            OVERRIDING SYSTEM VALUE
            SELECT nextval('conveyor.job_queue_id_seq'), coalesce(u.queue, 'default'), u.kind,
                   coalesce(u.payload, '{}'), coalesce(u.priority, 0)::smallint, 'queued',
                   coalesce(u.run_at, now()), u.max_attempts::integer
              FROM unnest(fn_job__enqueue_insert.kinds, fn_job__enqueue_insert.payloads,
                          fn_job__enqueue_insert.queues, fn_job__enqueue_insert.priorities,
                          fn_job__enqueue_insert.run_ats, fn_job__enqueue_insert.max_attempts)
                   WITH ORDINALITY AS u(kind, payload, queue, priority, run_at, max_attempts, ord)
             ORDER BY u.ord
            RETURNING jq.id
        )
        SELECT array_agg(ins.id ORDER BY ins.id), count(*) INTO v_ids, v_created
          FROM inserted AS ins;
        RETURN jsonb_build_object('ok', true, 'job_ids', to_jsonb(v_ids), 'created', v_created);
    END IF;

    -- Keys: ids are drawn from the identity sequence up front so each input element maps to its
    -- row without relying on RETURNING order. An element repeating an earlier element's key maps
    -- to that earlier element (first_ord). NULL id = key held by a live job.
    WITH input AS (
        SELECT u.*,
               CASE WHEN u.idempotency_key IS NULL THEN u.ord
                    ELSE min(u.ord) OVER (PARTITION BY u.idempotency_key) END AS first_ord
          FROM unnest(fn_job__enqueue_insert.kinds, fn_job__enqueue_insert.payloads,
                      fn_job__enqueue_insert.queues, fn_job__enqueue_insert.priorities,
                      fn_job__enqueue_insert.run_ats, fn_job__enqueue_insert.idempotency_keys,
                      fn_job__enqueue_insert.max_attempts)
               WITH ORDINALITY AS u(kind, payload, queue, priority, run_at, idempotency_key, max_attempts, ord)
    ), fresh AS MATERIALIZED (
        SELECT i.ord, nextval('conveyor.job_queue_id_seq') AS id, i.kind, i.payload, i.queue,
               i.priority, i.run_at, i.idempotency_key, i.max_attempts
          FROM input AS i
         WHERE i.ord = i.first_ord
         ORDER BY i.ord  -- nextval runs after the sort: ids ascend in input order (FIFO)
    ), inserted AS (
        INSERT INTO job_queue AS jq
               (id, queue, kind, payload, priority, status, run_at, idempotency_key, max_attempts)
        OVERRIDING SYSTEM VALUE
        SELECT f.id, coalesce(f.queue, 'default'), f.kind, coalesce(f.payload, '{}'),
               coalesce(f.priority, 0)::smallint, 'queued', coalesce(f.run_at, now()),
               f.idempotency_key, f.max_attempts::integer
          FROM fresh AS f
         ORDER BY f.ord
        ON CONFLICT (idempotency_key)
           WHERE idempotency_key IS NOT NULL AND status IN ('waiting', 'queued', 'in_progress')
           DO NOTHING
        RETURNING jq.id
    )
    SELECT array_agg(ins.id ORDER BY i.ord),
           (SELECT count(*) FROM inserted)
      INTO v_ids, v_created
      FROM input AS i
      JOIN fresh AS f ON f.ord = i.first_ord
      LEFT JOIN inserted AS ins ON ins.id = f.id;

    -- Keys a live job already held: report that job (a separate statement, so a twin that a
    -- concurrent transaction committed while the INSERT waited on it is visible).
    IF array_position(v_ids, NULL) IS NOT NULL THEN
        SELECT array_agg(coalesce(u.id, jq.id) ORDER BY u.ord),
               bool_and(coalesce(u.id, jq.id) IS NOT NULL)
          INTO v_ids, v_resolved
          FROM unnest(v_ids, fn_job__enqueue_insert.idempotency_keys) WITH ORDINALITY AS u(id, idempotency_key, ord)
          LEFT JOIN job_queue AS jq
                 ON u.id IS NULL
                AND jq.idempotency_key = u.idempotency_key
                AND jq.status IN ('waiting', 'queued', 'in_progress');
        IF NOT v_resolved THEN
            -- The live twin finished between the two statements: rare; the caller retries.
            RAISE EXCEPTION 'fn_job_enqueue_many: an idempotency key changed hands during the call'
                USING ERRCODE = 'serialization_failure', HINT = 'Retry the transaction.';
        END IF;
    END IF;

    RETURN jsonb_build_object('ok', true, 'job_ids', to_jsonb(v_ids), 'created', v_created);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__enqueue_insert(text[], jsonb[], text[], numeric[], timestamptz[], text[], numeric[], text[]) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__enqueue_insert(text[], jsonb[], text[], numeric[], timestamptz[], text[], numeric[], text[]) IS
    'Private: insert fn_job_enqueue_many''s validated batch (plain INSERT without idempotency keys; '
    'the live-key rules with them); refuses concurrency keys before phase 8.';
