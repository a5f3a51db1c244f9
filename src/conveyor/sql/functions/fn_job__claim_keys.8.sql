-- fn_job__claim_keys: private helper of fn_job__claim_limited (phase 8): up to allow rows of a
-- limited queue's keys in fair order, locked. Keys with backlog (fn_job__limit_keys, from the
-- one after the cursor `after`) are taken in turn, a turn being at most an eighth of the claim
-- (per_key = ceil(allow / 8)): rows are ranked within their key and taken rank by rank, so the
-- claim takes a key's (r+1)th row only once each key it looks at gave its rth. Each key gives at
-- most least(per_key, its cap − its jobs in progress, its tokens at `at`), the cap being its
-- job_key_limit row's or key_max_in_progress; jobs in progress per key are counted only when
-- key_caps (job_queue_key_running_idx). Jobs without a key are one more group, whose turn comes
-- when the walk wraps (between the last key and the first), found in the first 4 × allow + 16
-- ready rows of the claim index. Each key's rows are locked as they are read, skipping rows
-- another statement holds (another claim's, a cancel): claims running at once from the same
-- cursor take a key's next rows, not each other's. Rows locked and not taken stay locked until
-- commit (others skip them meanwhile, as claims always do).
-- Looks at ceil(allow / per_key) + 2 keys; when that leaves the claim short it looks again once
-- or twice: every key's full share when the walk saw every key (few keys with backlog), else
-- 4 × as many keys + 16 (keys whose rows are not ready, of other kinds, or at their cap).
-- Returns the ids in that order, NULL when no key has backlog (the caller claims the queue's
-- rows by the claim index), and the key of the last one ('' for a job without a key): the
-- next claim's cursor. fn_job__claim_limited calls it before the queue's lock when no key has
-- limits of its own, else under the lock.
CREATE OR REPLACE FUNCTION conveyor.fn_job__claim_keys(
    queue               text,
    kinds               text[],
    kind_exact          text[],
    kind_prefixes       text[],
    after               text,
    allow               integer,
    key_max_in_progress integer,
    key_caps            boolean,
    at                  timestamptz,
    OUT ids             bigint[],
    OUT last_key        text
) RETURNS record
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_per  integer := ceil(fn_job__claim_keys.allow / 8.0)::integer;
    v_n    integer := ceil(fn_job__claim_keys.allow::numeric / v_per)::integer + 2;
    v_keys text[];
    v_free bigint[];
    v_pass integer := 0;
BEGIN
    v_keys := fn_job__limit_keys(fn_job__claim_keys.queue, fn_job__claim_keys.after, v_n);
    IF cardinality(v_keys) = 0 THEN
        RETURN;  -- ids NULL: no key has backlog
    END IF;
    LOOP
        v_pass := v_pass + 1;
        v_free := NULL;
        IF array_position(v_keys, NULL) IS NOT NULL THEN  -- the keyless jobs' turn
            v_free := ARRAY(
                SELECT jq.id FROM job_queue AS jq
                 WHERE jq.id = ANY (ARRAY(
                        SELECT w.id
                          FROM (SELECT c.id, c.concurrency_key
                                  FROM job_queue AS c
                                 WHERE c.status = 'queued'
                                   AND c.queue = fn_job__claim_keys.queue
                                   AND c.run_at <= now()
                                   AND (fn_job__claim_keys.kinds IS NULL
                                        OR c.kind = ANY (fn_job__claim_keys.kinds))
                                   AND (fn_job__claim_keys.kind_exact IS NULL
                                        OR c.kind = ANY (fn_job__claim_keys.kind_exact)
                                        OR EXISTS (SELECT 1 FROM unnest(fn_job__claim_keys.kind_prefixes) AS sp(prefix)
                                                    WHERE starts_with(c.kind, sp.prefix)))
                                 ORDER BY c.priority DESC, c.run_at, c.id
                                 LIMIT 4 * fn_job__claim_keys.allow + 16) AS w
                         WHERE w.concurrency_key IS NULL
                         LIMIT v_per))
                   AND jq.status = 'queued'
                 ORDER BY jq.priority DESC, jq.run_at, jq.id
                   FOR UPDATE SKIP LOCKED);
        END IF;

        WITH keys AS (
            SELECT u.key, u.ord FROM unnest(v_keys) WITH ORDINALITY AS u(key, ord)
        ), running AS (  -- counted only when some key has a cap (else a one-time filter skips it)
            SELECT jq.concurrency_key AS key, count(*) AS n
              FROM job_queue AS jq
             WHERE fn_job__claim_keys.key_caps
               AND jq.status = 'in_progress' AND jq.queue = fn_job__claim_keys.queue
               AND jq.concurrency_key = ANY (v_keys)
             GROUP BY jq.concurrency_key
        ), allowed AS (
            SELECT k.key, k.ord,
                   least(v_per,
                         coalesce(kl.max_in_progress, fn_job__claim_keys.key_max_in_progress) - coalesce(r.n, 0),
                         floor(fn_job__limit_tokens(kl.tokens, kl.refilled_at, kl.rate,
                                                    kl.per_seconds, fn_job__claim_keys.at)))::integer AS n
              FROM keys AS k
              LEFT JOIN job_key_limit AS kl
                     ON kl.queue = fn_job__claim_keys.queue AND kl.concurrency_key = k.key
              LEFT JOIN running AS r ON r.key = k.key
             WHERE k.key IS NOT NULL
        ), candidates AS (
            SELECT p.id, a.key, a.ord,
                   row_number() OVER (PARTITION BY a.ord ORDER BY p.priority DESC, p.run_at, p.id) AS rank
              FROM allowed AS a
             CROSS JOIN LATERAL (
                    SELECT jq.id, jq.priority, jq.run_at
                      FROM job_queue AS jq
                     WHERE jq.status = 'queued'
                       AND jq.queue = fn_job__claim_keys.queue
                       AND jq.concurrency_key = a.key
                       AND jq.run_at <= now()
                       AND (fn_job__claim_keys.kinds IS NULL
                            OR jq.kind = ANY (fn_job__claim_keys.kinds))
                       AND (fn_job__claim_keys.kind_exact IS NULL
                            OR jq.kind = ANY (fn_job__claim_keys.kind_exact)
                            OR EXISTS (SELECT 1 FROM unnest(fn_job__claim_keys.kind_prefixes) AS sp(prefix)
                                        WHERE starts_with(jq.kind, sp.prefix)))
                     ORDER BY jq.priority DESC, jq.run_at, jq.id
                     LIMIT greatest(a.n, 0)
                       FOR UPDATE OF jq SKIP LOCKED) AS p
            UNION ALL
            SELECT f.id, '', array_position(v_keys, NULL), f.rank
              FROM unnest(v_free) WITH ORDINALITY AS f(id, rank)
        )
        SELECT array_agg(t.id ORDER BY t.rank, t.ord),
               (array_agg(t.key ORDER BY t.rank DESC, t.ord DESC))[1]
          INTO ids, last_key
          FROM (SELECT c.id, c.key, c.rank, c.ord FROM candidates AS c
                 ORDER BY c.rank, c.ord LIMIT fn_job__claim_keys.allow) AS t;
        ids := coalesce(ids, '{}');

        EXIT WHEN cardinality(ids) >= fn_job__claim_keys.allow OR v_pass = 3;
        -- Short. Rows already locked come back to this transaction in the next look.
        IF array_position(v_keys, NULL) IS NOT NULL THEN
            EXIT WHEN v_per >= fn_job__claim_keys.allow;  -- every key gave all it may
            v_per := fn_job__claim_keys.allow;             -- few keys: each its full share
        ELSE
            v_n := 4 * v_n + 16;  -- keys that gave none or less: look further
            v_keys := fn_job__limit_keys(fn_job__claim_keys.queue, fn_job__claim_keys.after, v_n);
        END IF;
    END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__claim_keys(text, text[], text[], text[], text, integer, integer, boolean, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__claim_keys(text, text[], text[], text[], text, integer, integer, boolean, timestamptz) IS
    'Private: up to allow rows of a limited queue''s keys in fair order (turns of at most an eighth of the claim per key, from the key after a cursor, within each key''s cap and tokens), locked; returns the ids (NULL when no key has backlog) and the last key picked.';
