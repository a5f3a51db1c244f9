-- fn_job__limit_tokens: private helper of phase 8's limits, the token bucket of one rate: the
-- tokens available at time at, from the tokens left at refilled_at, refilling at rate per
-- per_seconds and holding at most the burst (5 % of a second's worth, at least 1), so a rate is
-- spread evenly rather than spent in a burst. NULL when there is no rate. Called per key row by
-- fn_job__claim_limited and by v_job_limits: plpgsql IMMUTABLE without SET (see ../README.md).
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
    RETURN least(greatest(1, rate / per_seconds * 0.05),
                 coalesce(tokens, 0)
                 + greatest(0, extract(epoch FROM at - refilled_at)) * rate / per_seconds);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__limit_tokens(numeric, timestamptz, integer, numeric, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__limit_tokens(numeric, timestamptz, integer, numeric, timestamptz) IS
    'Private: tokens of a rate limit''s bucket at a time (burst = max(1, 5 % of a second''s rate)); NULL without a rate.';
