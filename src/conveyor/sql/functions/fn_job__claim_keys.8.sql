-- fn_job__claim_keys: private helper of fn_job__claim_limited (phase 8): the rows of a limited
-- queue's keys in fair order, locked. keys (keys with backlog, from the cursor on) are taken in
-- turn: rows are ranked within their key and taken rank by rank, so a claim takes at most one
-- job per key before it takes a second from any; each key gives at most least(allow, its cap −
-- its jobs in progress, its tokens at at), the cap being its job_key_limit row's or
-- key_max_in_progress; jobs without a key form one more group, found in the first window_rows
-- ready rows of the claim index; at most per_key rows of a key are ranked (the caller asks for
-- few first, then for allow if that left the claim short). Jobs in progress per key are counted
-- only when key_caps. Returns
-- at most allow ids in that order (a row another statement holds is skipped) and the key of the
-- last one picked (NULL when it has none): the next claim's cursor. fn_job__claim_limited calls
-- it before the queue's lock when no key has limits of its own, else under the lock.
CREATE OR REPLACE FUNCTION conveyor.fn_job__claim_keys(
    queue               text,
    kinds               text[],
    kind_exact          text[],
    kind_prefixes       text[],
    keys                text[],
    allow               integer,
    window_rows         integer,
    per_key             integer,
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
    v_picked bigint[];
    v_locked bigint[];
BEGIN
    WITH keys AS (
        SELECT u.key, u.ord FROM unnest(fn_job__claim_keys.keys) WITH ORDINALITY AS u(key, ord)
    ), running AS (  -- counted only when some key has a cap (else a one-time filter skips it)
        SELECT jq.concurrency_key AS key, count(*) AS n
          FROM job_queue AS jq
         WHERE fn_job__claim_keys.key_caps
           AND jq.status = 'in_progress' AND jq.queue = fn_job__claim_keys.queue
           AND jq.concurrency_key = ANY (fn_job__claim_keys.keys)
         GROUP BY jq.concurrency_key
    ), allowed AS (
        SELECT k.key, k.ord,
               least(fn_job__claim_keys.allow,
                     coalesce(kl.max_in_progress, fn_job__claim_keys.key_max_in_progress) - coalesce(r.n, 0),
                     floor(fn_job__limit_tokens(kl.tokens, kl.refilled_at, kl.rate,
                                                kl.per_seconds, fn_job__claim_keys.at)))::integer AS n
          FROM keys AS k
          LEFT JOIN job_key_limit AS kl
                 ON kl.queue = fn_job__claim_keys.queue AND kl.concurrency_key = k.key
          LEFT JOIN running AS r ON r.key = k.key
    ), candidates AS (
        SELECT c.id, c.key, c.rank, a.ord
          FROM allowed AS a
         CROSS JOIN LATERAL (
                SELECT w.id, w.key,
                       row_number() OVER (ORDER BY w.priority DESC, w.run_at, w.id) AS rank
                  FROM (SELECT jq.id, jq.concurrency_key AS key, jq.priority, jq.run_at
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
                         LIMIT least(greatest(a.n, 0), fn_job__claim_keys.per_key)) AS w
               ) AS c
        UNION ALL
        SELECT w.id, NULL, row_number() OVER (ORDER BY w.priority DESC, w.run_at, w.id), 0
          FROM (SELECT jq.id, jq.priority, jq.run_at, jq.concurrency_key
                  FROM job_queue AS jq
                 WHERE jq.status = 'queued'
                   AND jq.queue = fn_job__claim_keys.queue
                   AND jq.run_at <= now()
                   AND (fn_job__claim_keys.kinds IS NULL
                        OR jq.kind = ANY (fn_job__claim_keys.kinds))
                   AND (fn_job__claim_keys.kind_exact IS NULL
                        OR jq.kind = ANY (fn_job__claim_keys.kind_exact)
                        OR EXISTS (SELECT 1 FROM unnest(fn_job__claim_keys.kind_prefixes) AS sp(prefix)
                                    WHERE starts_with(jq.kind, sp.prefix)))
                 ORDER BY jq.priority DESC, jq.run_at, jq.id
                 LIMIT fn_job__claim_keys.window_rows) AS w
         WHERE w.concurrency_key IS NULL
    )
    SELECT array_agg(t.id ORDER BY t.rank, t.ord), (array_agg(t.key ORDER BY t.rank DESC, t.ord DESC))[1]
      INTO v_picked, last_key
      FROM (SELECT c.id, c.key, c.rank, c.ord FROM candidates AS c ORDER BY c.rank, c.ord LIMIT fn_job__claim_keys.allow) AS t;

    -- A row another statement holds (another claim's, a cancel) is skipped; ids keep the order.
    v_locked := ARRAY(SELECT jq.id FROM job_queue AS jq
                       WHERE jq.id = ANY (v_picked) AND jq.status = 'queued'
                         FOR UPDATE SKIP LOCKED);
    ids := ARRAY(SELECT u.id FROM unnest(v_picked) WITH ORDINALITY AS u(id, ord)
                  WHERE u.id = ANY (v_locked) ORDER BY u.ord);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__claim_keys(text, text[], text[], text[], text[], integer, integer, integer, integer, boolean, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__claim_keys(text, text[], text[], text[], text[], integer, integer, integer, integer, boolean, timestamptz) IS
    'Private: rows of a limited queue''s keys in fair order (round robin by rank within key, within each key''s cap and tokens), locked; returns the ids and the last key picked.';
