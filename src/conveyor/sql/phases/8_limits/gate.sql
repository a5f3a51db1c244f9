-- Phase 8 verification gate, one (item, passed, detail) row per check:
--   1. the objects exist (column, index, tables, view, functions);
--   2. a queue cap: 5 due jobs, cap 2 → a claim of 5 leases 2, the next leases none;
--   3. a key cap of 1: 3 jobs of one key and 1 of another → a claim of 5 leases one of each;
--   4. fairness: 6 jobs of key a (older) and 1 of key b, cap 2 per claim → the claim of 2 takes
--      one of each;
--   5. with the flag off, the stored limits are ignored and fn_job_queue_limit refuses;
--   6. privileges: a worker may enqueue with a key, only conveyor_admin may set limits.
-- Everything happens in one transaction that is rolled back; the flags are switched on inside it
-- and the gate counts only its own queues (conveyor-gate-limits-*).
BEGIN;

CREATE TEMP TABLE gate_result (
    seq    serial,
    item   text    NOT NULL,
    passed boolean NOT NULL,
    detail text    NOT NULL DEFAULT ''
) ON COMMIT DROP;

-- 1. Objects.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'objects: column, index, tables, view and functions of phase 8 exist',
       count(*) FILTER (WHERE o.oid IS NULL) = 0,
       COALESCE('missing: ' || string_agg(o.name, ', ') FILTER (WHERE o.oid IS NULL),
                count(*) || ' objects present')
  FROM (SELECT x.name,
               CASE WHEN x.name LIKE '%(%' THEN to_regprocedure(x.name)::oid
                    WHEN x.name LIKE '%.%.%' THEN
                         (SELECT a.attrelid::oid FROM pg_attribute AS a
                           WHERE a.attrelid = 'conveyor.job_queue'::regclass
                             AND a.attname = split_part(x.name, '.', 3) AND NOT a.attisdropped)
                    ELSE to_regclass(x.name)::oid END AS oid
          FROM unnest(ARRAY[
                   'conveyor.job_queue.concurrency_key', 'conveyor.job_queue_key_idx',
                   'conveyor.job_queue_key_running_idx',
                   'conveyor.job_queue_limit', 'conveyor.job_key_limit', 'conveyor.v_job_limits',
                   'conveyor.fn_job_queue_limit(text, integer, integer, numeric)',
                   'conveyor.fn_job_key_limit(text, text, integer, integer, numeric)',
                   'conveyor.fn_job__claim_limited(text, text[], integer, text[], text[])',
                   'conveyor.fn_job__limit_tokens(numeric, timestamptz, integer, numeric, timestamptz)',
                   'conveyor.fn_job__limit_burst(integer, numeric)',
                   'conveyor.fn_job__claim_keys(text, text[], text[], text[], text, integer, integer, boolean, timestamptz)',
                   'conveyor.fn_job__limit_keys(text, text, integer)',
                   'conveyor.fn_job__limit_check(text, integer, integer, numeric)',
                   'conveyor.fn_job__limit_target(text, text, boolean, text)',
                   'conveyor.fn_job_enqueue(text, jsonb, text, integer, timestamptz, text, integer, text)']) AS x(name)
       ) AS o;

-- 2.–4. The limits in the claim.
DO $$
DECLARE
    v_item   CONSTANT text := 'claim: a queue cap of 2 leases 2 of 5 due jobs, then none';
    v_first  integer;
    v_second integer;
BEGIN
    PERFORM conveyor.fn_config_set('queue.job_substrate.enabled', 'true');
    PERFORM conveyor.fn_config_set('queue.limits.enabled', 'true');
    PERFORM conveyor.fn_job_enqueue(kind => 'conveyor.gate.phase8', queue => 'conveyor-gate-limits-cap')
       FROM generate_series(1, 5);
    PERFORM conveyor.fn_job_queue_limit('conveyor-gate-limits-cap', max_in_progress => 2);
    v_first := jsonb_array_length(conveyor.fn_job_claim(worker => 'gate', queues => ARRAY['conveyor-gate-limits-cap'], batch => 5) -> 'jobs');
    v_second := jsonb_array_length(conveyor.fn_job_claim(worker => 'gate', queues => ARRAY['conveyor-gate-limits-cap'], batch => 5) -> 'jobs');
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item, v_first = 2 AND v_second = 0, format('leased %s, then %s', v_first, v_second));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, SQLERRM);
END;
$$;

DO $$
DECLARE
    v_item CONSTANT text := 'claim: a key cap of 1 leases one job per key';
    v_keys text[];
BEGIN
    PERFORM conveyor.fn_job_enqueue(kind => 'conveyor.gate.phase8', queue => 'conveyor-gate-limits-key',
                                    concurrency_key => 'a')
       FROM generate_series(1, 3);
    PERFORM conveyor.fn_job_enqueue(kind => 'conveyor.gate.phase8', queue => 'conveyor-gate-limits-key',
                                    concurrency_key => 'b');
    PERFORM conveyor.fn_job_key_limit('conveyor-gate-limits-key', NULL, max_in_progress => 1);
    SELECT array_agg(jq.concurrency_key ORDER BY jq.concurrency_key) INTO v_keys
      FROM jsonb_array_elements(conveyor.fn_job_claim(worker => 'gate', queues => ARRAY['conveyor-gate-limits-key'], batch => 5) -> 'jobs') AS j(job)
      JOIN conveyor.job_queue AS jq ON jq.id = (j.job ->> 'job_id')::bigint;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item, v_keys IS NOT DISTINCT FROM ARRAY['a', 'b'], format('keys leased: %s', v_keys));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, SQLERRM);
END;
$$;

DO $$
DECLARE
    v_item CONSTANT text := 'claim: keys are taken in turn (an older backlog of one key does not starve another)';
    v_keys text[];
BEGIN
    PERFORM conveyor.fn_job_enqueue(kind => 'conveyor.gate.phase8', queue => 'conveyor-gate-limits-fair',
                                    concurrency_key => 'a', run_at => now() - interval '1 hour')
       FROM generate_series(1, 6);
    PERFORM conveyor.fn_job_enqueue(kind => 'conveyor.gate.phase8', queue => 'conveyor-gate-limits-fair',
                                    concurrency_key => 'b');
    PERFORM conveyor.fn_job_queue_limit('conveyor-gate-limits-fair', max_in_progress => 100);
    SELECT array_agg(jq.concurrency_key ORDER BY jq.concurrency_key) INTO v_keys
      FROM jsonb_array_elements(conveyor.fn_job_claim(worker => 'gate', queues => ARRAY['conveyor-gate-limits-fair'], batch => 2) -> 'jobs') AS j(job)
      JOIN conveyor.job_queue AS jq ON jq.id = (j.job ->> 'job_id')::bigint;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item, v_keys IS NOT DISTINCT FROM ARRAY['a', 'b'], format('keys leased: %s', v_keys));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, SQLERRM);
END;
$$;

DO $$
DECLARE
    v_item   CONSTANT text := 'claim: a rate of 20/s leases its burst (1 job), then none, and says when to claim again';
    v_first  jsonb;
    v_second jsonb;
BEGIN
    PERFORM conveyor.fn_job_enqueue(kind => 'conveyor.gate.phase8', queue => 'conveyor-gate-limits-rate')
       FROM generate_series(1, 3);
    PERFORM conveyor.fn_job_queue_limit('conveyor-gate-limits-rate', rate => 20, per_seconds => 1);
    v_first := conveyor.fn_job_claim(worker => 'gate', queues => ARRAY['conveyor-gate-limits-rate'], batch => 3);
    v_second := conveyor.fn_job_claim(worker => 'gate', queues => ARRAY['conveyor-gate-limits-rate'], batch => 3);
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            jsonb_array_length(v_first -> 'jobs') = 1 AND jsonb_array_length(v_second -> 'jobs') = 0
            AND (v_first ->> 'limit_wait_seconds')::numeric BETWEEN 0.001 AND 0.05
            AND (v_second ->> 'limit_wait_seconds')::numeric BETWEEN 0 AND 0.05,
            format('leased %s (wait %s s), then %s (wait %s s)',
                   jsonb_array_length(v_first -> 'jobs'), v_first ->> 'limit_wait_seconds',
                   jsonb_array_length(v_second -> 'jobs'), v_second ->> 'limit_wait_seconds'));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, SQLERRM);
END;
$$;

-- 5. The flag off.
DO $$
DECLARE
    v_item   CONSTANT text := 'flag off: limits ignored by the claim, fn_job_queue_limit refuses';
    v_leased integer;
    v_answer jsonb;
BEGIN
    PERFORM conveyor.fn_config_set('queue.limits.enabled', 'false');
    v_leased := jsonb_array_length(conveyor.fn_job_claim(worker => 'gate', queues => ARRAY['conveyor-gate-limits-cap'], batch => 5) -> 'jobs');
    v_answer := conveyor.fn_job_queue_limit('conveyor-gate-limits-cap', max_in_progress => 1);
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item,
            v_leased = 3 AND v_answer = '{"refused": true, "reason": "limits_disabled", "flag": "queue.limits.enabled"}',
            format('leased %s past the cap; answer %s', v_leased, v_answer));
    PERFORM conveyor.fn_config_set('queue.limits.enabled', 'true');
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, SQLERRM);
END;
$$;

-- 6. Privileges.
INSERT INTO pg_temp.gate_result (item, passed, detail)
SELECT 'privileges: workers enqueue with a key and read v_job_limits; only conveyor_admin sets limits',
       COALESCE(bool_and(x.ok), false),
       COALESCE(string_agg(x.what, '; ') FILTER (WHERE NOT x.ok), 'as expected')
  FROM (SELECT 'worker cannot set a queue limit' AS what,
               NOT has_function_privilege('conveyor_worker', p.oid, 'EXECUTE') AS ok
          FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = 'conveyor' AND p.proname IN ('fn_job_queue_limit', 'fn_job_key_limit',
                                                         'fn_job__claim_limited')
        UNION ALL
        SELECT 'admin can set limits', has_function_privilege('conveyor_admin', p.oid, 'EXECUTE')
          FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = 'conveyor' AND p.proname IN ('fn_job_queue_limit', 'fn_job_key_limit')
        UNION ALL
        SELECT 'worker can enqueue with a concurrency_key', has_function_privilege('conveyor_worker', p.oid, 'EXECUTE')
          FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = 'conveyor' AND p.proname = 'fn_job_enqueue'
           AND 'concurrency_key' = ANY (p.proargnames)
        UNION ALL
        SELECT 'worker reads v_job_limits',
               COALESCE(has_table_privilege('conveyor_worker', to_regclass('conveyor.v_job_limits'), 'SELECT'), false)
       ) AS x;

SELECT g.item, g.passed, g.detail FROM pg_temp.gate_result AS g ORDER BY g.seq;

ROLLBACK;
