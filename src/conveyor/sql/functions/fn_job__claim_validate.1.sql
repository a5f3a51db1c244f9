-- fn_job__claim_validate: private helper of every fn_job_claim version. Checks the arguments the
-- versions share (queues and batch already defaulted by the caller) and raises 22023 naming the
-- bad one, as fn_job_claim; returns the lease to grant in seconds (lease_seconds, or
-- queue.lease.default_seconds clamped to 1..86400 when it is NULL).
CREATE OR REPLACE FUNCTION conveyor.fn_job__claim_validate(
    worker        text,
    queues        text[],
    kinds         text[],
    batch         integer,
    lease_seconds integer
) RETURNS integer
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    IF worker IS NULL OR worker = '' OR octet_length(worker) > 255 THEN
        RAISE EXCEPTION 'fn_job_claim: worker is required (1 to 255 bytes)'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the worker, e.g. host:pid; it is recorded in leased_by.';
    END IF;
    IF cardinality(queues) = 0 OR array_position(queues, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'fn_job_claim: queues must name at least one queue and contain no NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL to claim from ''default''.';
    END IF;
    IF kinds IS NOT NULL AND (cardinality(kinds) = 0 OR array_position(kinds, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'fn_job_claim: kinds must name at least one kind and contain no NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL to claim jobs of any kind.';
    END IF;
    IF batch NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'fn_job_claim: batch is %; it must be from 1 to 1000', batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Claim at most 1000 jobs per call.';
    END IF;
    IF lease_seconds IS NULL THEN
        RETURN least(greatest(fn_job__config_number('queue.lease.default_seconds', 60), 1), 86400);
    ELSIF lease_seconds NOT BETWEEN 1 AND 86400 THEN
        RAISE EXCEPTION 'fn_job_claim: lease_seconds is %; it must be from 1 to 86400', lease_seconds
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for queue.lease.default_seconds; extend long jobs with fn_job_extend_lease.';
    END IF;
    RETURN lease_seconds;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__claim_validate(text, text[], text[], integer, integer) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__claim_validate(text, text[], text[], integer, integer) IS
    'Private: check fn_job_claim''s shared arguments (SQLSTATE 22023 naming the bad one); returns the lease in seconds to grant.';
