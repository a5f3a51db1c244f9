-- fn_job__dead_letter: move one leased job to job_dead_letter in one statement (DELETE … RETURNING
-- feeding the INSERT), keeping the full row as JSON. Fenced like every worker write: only the
-- in_progress job holding lease_token moves; returns the dead letter id, or NULL when the lease
-- is lost (nothing changed). Deleting the row releases its idempotency key. error is truncated
-- to 2,000 characters. Private: no EXECUTE grant; callers are fn_job_fail_transient and
-- fn_job_fail_permanent.
CREATE OR REPLACE FUNCTION conveyor.fn_job__dead_letter(
    job_id      bigint,
    lease_token uuid,
    reason      text,
    error       text
) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_error          text := left(fn_job__dead_letter.error, 2000);
    v_dead_letter_id bigint;
BEGIN
    WITH moved AS (
        DELETE FROM job_queue AS jq
         WHERE jq.id = fn_job__dead_letter.job_id
           AND jq.status = 'in_progress'
           AND jq.lease_token = fn_job__dead_letter.lease_token
        RETURNING jq.*
    )
    INSERT INTO job_dead_letter AS dl (job_id, queue, kind, payload, job, reason, error, attempts)
    SELECT m.id, m.queue, m.kind, m.payload,
           to_jsonb(m) || jsonb_build_object('last_error', coalesce(v_error, m.last_error)),
           fn_job__dead_letter.reason, v_error, m.attempts
      FROM moved AS m
    RETURNING dl.id INTO v_dead_letter_id;
    RETURN v_dead_letter_id;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__dead_letter(bigint, uuid, text, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__dead_letter(bigint, uuid, text, text) IS
    'Private: move the in_progress job holding lease_token to job_dead_letter (full row as JSON); '
    'returns the dead letter id, NULL if the lease is lost.';
