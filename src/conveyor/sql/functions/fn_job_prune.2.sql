-- fn_job_prune: retention, as an orchestrator tick. Deletes, oldest first and at most batch rows
-- per kind of row per call:
--   * succeeded jobs whose finished_at is older than queue.retention.succeeded_seconds,
--   * cancelled jobs whose finished_at is older than queue.retention.cancelled_seconds,
--   * resolved dead letters whose resolved_at is older than
--     queue.retention.dead_letter_resolved_seconds.
-- Live jobs (waiting, queued, in_progress) and open dead letters are never touched. Small batches
-- keep each transaction short (a long one pins the xmin horizon and bloats the very table it
-- cleans) and let vacuum keep up; rows other sessions hold are skipped (FOR UPDATE SKIP LOCKED),
-- so two ticks at once do no harm. "more" says whether another prunable, unlocked row is waiting
-- (probed with one more SKIP LOCKED row per table), so a caller may loop while more is true.
-- Settings missing or not a JSON number fall back to 7 days / 7 days / 30 days; they are
-- clamped to 0..100 years.
CREATE OR REPLACE FUNCTION conveyor.fn_job_prune(
    batch integer DEFAULT 10000
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_batch                integer := coalesce(fn_job_prune.batch, 10000);
    v_succeeded_before     timestamptz;
    v_cancelled_before     timestamptz;
    v_dead_letters_before  timestamptz;
    v_succeeded            integer;
    v_cancelled            integer;
    v_dead_letters         integer;
    v_more                 boolean := false;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF v_batch NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'fn_job_prune: batch is %; it must be from 1 to 100000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for 10000 and call again while the answer says "more": true.';
    END IF;

    v_succeeded_before := now() - make_interval(secs =>
        least(greatest(fn_job__config_number('queue.retention.succeeded_seconds', 604800), 0), 3155760000)::double precision);
    v_cancelled_before := now() - make_interval(secs =>
        least(greatest(fn_job__config_number('queue.retention.cancelled_seconds', 604800), 0), 3155760000)::double precision);
    v_dead_letters_before := now() - make_interval(secs =>
        least(greatest(fn_job__config_number('queue.retention.dead_letter_resolved_seconds', 2592000), 0), 3155760000)::double precision);

    -- job_queue_finished_idx (finished_at) WHERE status IN ('succeeded', 'cancelled') finds the
    -- batch; id = ANY (ARRAY(…)) then deletes it through the primary key (an IN (subquery) here
    -- is planned as a hash semi-join over a sequential scan of the whole table).
    DELETE FROM job_queue AS jq
     WHERE jq.id = ANY (ARRAY(SELECT old.id
                       FROM job_queue AS old
                      WHERE old.status = 'succeeded'
                        AND old.finished_at < v_succeeded_before
                      ORDER BY old.finished_at
                      LIMIT v_batch
                        FOR UPDATE OF old SKIP LOCKED));
    GET DIAGNOSTICS v_succeeded = ROW_COUNT;

    DELETE FROM job_queue AS jq
     WHERE jq.id = ANY (ARRAY(SELECT old.id
                       FROM job_queue AS old
                      WHERE old.status = 'cancelled'
                        AND old.finished_at < v_cancelled_before
                      ORDER BY old.finished_at
                      LIMIT v_batch
                        FOR UPDATE OF old SKIP LOCKED));
    GET DIAGNOSTICS v_cancelled = ROW_COUNT;

    -- job_dead_letter_resolved_idx (resolved_at) WHERE resolved_at IS NOT NULL (phase 2).
    DELETE FROM job_dead_letter AS dl
     WHERE dl.id = ANY (ARRAY(SELECT old.id
                       FROM job_dead_letter AS old
                      WHERE old.resolved_at IS NOT NULL
                        AND old.resolved_at < v_dead_letters_before
                      ORDER BY old.resolved_at
                      LIMIT v_batch
                        FOR UPDATE OF old SKIP LOCKED));
    GET DIAGNOSTICS v_dead_letters = ROW_COUNT;

    -- Deleted rows are gone from this transaction's view, so these find only what is left.
    PERFORM 1 FROM job_queue AS jq
      WHERE jq.status = 'succeeded' AND jq.finished_at < v_succeeded_before
      LIMIT 1 FOR UPDATE OF jq SKIP LOCKED;
    v_more := FOUND;
    IF NOT v_more THEN
        PERFORM 1 FROM job_queue AS jq
          WHERE jq.status = 'cancelled' AND jq.finished_at < v_cancelled_before
          LIMIT 1 FOR UPDATE OF jq SKIP LOCKED;
        v_more := FOUND;
    END IF;
    IF NOT v_more THEN
        PERFORM 1 FROM job_dead_letter AS dl
          WHERE dl.resolved_at IS NOT NULL AND dl.resolved_at < v_dead_letters_before
          LIMIT 1 FOR UPDATE OF dl SKIP LOCKED;
        v_more := FOUND;
    END IF;

    RETURN jsonb_build_object('ok', true,
                              'deleted', jsonb_build_object('succeeded', v_succeeded,
                                                            'cancelled', v_cancelled,
                                                            'dead_letters', v_dead_letters),
                              'more', v_more);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_prune(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_prune(integer) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_prune(integer) IS
    'Orchestrator tick (retention): delete up to batch (1..100000, default 10000) rows per kind, '
    'oldest first, FOR UPDATE SKIP LOCKED: succeeded jobs finished before now() - '
    'queue.retention.succeeded_seconds (default 604800), cancelled jobs before now() - '
    'queue.retention.cancelled_seconds (604800), resolved dead letters resolved before now() - '
    'queue.retention.dead_letter_resolved_seconds (2592000). Live jobs and open dead letters are '
    'never deleted. → {"ok":true,"deleted":{"succeeded":n,"cancelled":n,"dead_letters":n},'
    '"more":bool} (more: prunable rows remain). Refuses job_substrate_disabled while '
    'queue.job_substrate.enabled is false. Example: SELECT conveyor.fn_job_prune();';
