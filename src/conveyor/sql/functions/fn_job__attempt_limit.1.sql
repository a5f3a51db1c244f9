-- fn_job__attempt_limit: THE max-attempts rule, once. A job's own max_attempts wins; else the
-- setting queue.retry.max_attempts.<kind>, else queue.retry.max_attempts.default, else 5; a
-- setting counts only if it is a JSON number from 1 to 1000 (a mistyped one falls through
-- instead of breaking every claim). Takes the two setting values, not their keys, so that
-- fn_job__claim_rows can join dot_config set-wise for a whole batch; fn_job__max_attempts looks
-- them up for one job.
--
-- plpgsql on purpose, not an inlinable LANGUAGE sql function: the claim statement is planned
-- afresh on every call (plpgsql picks custom plans for it), and inlining an sql function means
-- parsing its body at every planning. Measured on the claim (bench/results, 2026-12-03): inlined
-- +50 µs per call (+12 % at batch 1), this plpgsql call per claimed row within noise at batch 32.
-- No SET search_path either (a SET clause costs a configuration change per call, here per row):
-- the body names nothing but built-in functions and casts. Private: no EXECUTE grant.
CREATE OR REPLACE FUNCTION conveyor.fn_job__attempt_limit(
    own             integer,
    kind_setting    jsonb,
    default_setting jsonb
) RETURNS integer
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
AS $$
BEGIN
    RETURN coalesce(
               own,
               CASE WHEN jsonb_typeof(kind_setting) = 'number'
                         AND kind_setting::numeric BETWEEN 1 AND 1000
                    THEN kind_setting::numeric::integer END,
               CASE WHEN jsonb_typeof(default_setting) = 'number'
                         AND default_setting::numeric BETWEEN 1 AND 1000
                    THEN default_setting::numeric::integer END,
               5);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__attempt_limit(integer, jsonb, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__attempt_limit(integer, jsonb, jsonb) IS
    'Private: the max-attempts rule (own, else the kind setting, else the default setting, each a JSON number 1..1000, else 5).';
