-- fn_job__limit_tokens: private helper of phase 8's limits, the token bucket of one rate: the
-- tokens available at time at, from the tokens left at refilled_at, refilling at rate per
-- per_seconds and holding at most its burst (fn_job__limit_burst). NULL when there is no rate.
-- Called per key row by fn_job__claim_limited and by v_job_limits: plpgsql IMMUTABLE without SET
-- (see ../README.md), so it names the other helper with its schema.
CREATE OR REPLACE FUNCTION conveyor.fn_job__limit_tokens(
    tokens      numeric,
    refilled_at timestamptz,
    rate        integer,
    per_seconds numeric,
    at          timestamptz
) RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF rate IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN least(conveyor.fn_job__limit_burst(rate, per_seconds),
                 coalesce(tokens, 0)
                 + greatest(0, extract(epoch FROM at - refilled_at)) * rate / per_seconds);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__limit_tokens(numeric, timestamptz, integer, numeric, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__limit_tokens(numeric, timestamptz, integer, numeric, timestamptz) IS
    'Private: tokens of a rate limit''s bucket at a time (at most fn_job__limit_burst); NULL without a rate.';
