-- fn_job__limit_burst: private helper of phase 8's limits, the most tokens a rate's bucket holds:
-- 5 % of a second's worth, at least 1, so a rate is spread evenly rather than spent in a burst.
-- fn_job__limit_tokens caps the bucket with it; fn_job__claim_limited tells a worker held back
-- by the rate how long the bucket takes to fill to it. Called per key row: plpgsql IMMUTABLE
-- without SET (see ../README.md).
CREATE OR REPLACE FUNCTION conveyor.fn_job__limit_burst(
    rate        integer,
    per_seconds numeric
) RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    RETURN greatest(1, rate / per_seconds * 0.05);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__limit_burst(integer, numeric) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__limit_burst(integer, numeric) IS
    'Private: the most tokens a rate limit''s bucket holds (max(1, 5 % of a second''s rate)).';
