-- fn_job_complete_many: fn_job_complete for a batch of acknowledgements, in one statement.
-- job_ids[i] is completed with lease_tokens[i]; a pair whose job was already completed with that
-- token counts as completed (a repeated batch is harmless); any other pair is lease_lost and
-- changes nothing. Both lists follow the input order.
CREATE OR REPLACE FUNCTION conveyor.fn_job_complete_many(
    job_ids      bigint[],
    lease_tokens uuid[]
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_answer jsonb;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled');
    END IF;
    IF fn_job_complete_many.job_ids IS NULL OR fn_job_complete_many.lease_tokens IS NULL
       OR cardinality(fn_job_complete_many.job_ids) <> cardinality(fn_job_complete_many.lease_tokens)
       OR array_position(fn_job_complete_many.job_ids, NULL) IS NOT NULL
       OR array_position(fn_job_complete_many.lease_tokens, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'fn_job_complete_many: job_ids (% elements) and lease_tokens (% elements) must be '
                        'arrays of equal length without NULLs',
                        cardinality(fn_job_complete_many.job_ids), cardinality(fn_job_complete_many.lease_tokens)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass each claimed job''s id and lease_token at the same position.';
    END IF;

    WITH input AS (
        SELECT u.job_id, u.lease_token, u.ord
          FROM unnest(fn_job_complete_many.job_ids, fn_job_complete_many.lease_tokens)
               WITH ORDINALITY AS u(job_id, lease_token, ord)
    ), done AS (
        UPDATE job_queue AS jq
           SET status = 'succeeded',
               finished_at = now(),
               lease_expires_at = NULL
          FROM input AS i
         WHERE jq.id = i.job_id
           AND jq.status = 'in_progress'
           AND jq.lease_token = i.lease_token  -- fencing: a stale token matches none
        RETURNING jq.id, jq.lease_token
    ), outcome AS (
        -- "already": the statement's snapshot shows job_queue as it was before this call, so a
        -- row found succeeded with the same token was completed by an earlier call. Looked up
        -- by primary key only (no status in the WHERE), so no plan can scan the finished jobs.
        SELECT i.job_id, i.ord,
               CASE WHEN d.id IS NOT NULL THEN true
                    ELSE coalesce((SELECT jq.status = 'succeeded' AND jq.lease_token = i.lease_token
                                     FROM job_queue AS jq
                                    WHERE jq.id = i.job_id), false)
               END AS completed
          FROM input AS i
          LEFT JOIN (SELECT DISTINCT dn.id, dn.lease_token FROM done AS dn) AS d
                 ON d.id = i.job_id AND d.lease_token = i.lease_token
    )
    SELECT jsonb_build_object(
               'ok', true,
               'completed', coalesce(jsonb_agg(o.job_id ORDER BY o.ord) FILTER (WHERE o.completed), '[]'),
               'lease_lost', coalesce(jsonb_agg(o.job_id ORDER BY o.ord) FILTER (WHERE NOT o.completed), '[]'))
      INTO v_answer
      FROM outcome AS o;
    RETURN v_answer;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_complete_many(bigint[], uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_complete_many(bigint[], uuid[]) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_complete_many(bigint[], uuid[]) IS
    'Complete job_ids[i] with lease_tokens[i] for every i, in one statement. → {"ok":true,'
    '"completed":[ids],"lease_lost":[ids]} in input order (a job already completed with the same '
    'token counts as completed). Arrays of different length or with NULLs → SQLSTATE 22023. '
    'Refuses job_substrate_disabled while queue.job_substrate.enabled is false.';
