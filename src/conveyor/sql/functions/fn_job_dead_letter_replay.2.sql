-- fn_job_dead_letter_replay: put dead-lettered jobs back in job_queue. Either one dead letter by
-- id, or a filter (kind and/or queue) over the unresolved ones, oldest first, at most max_rows.
-- Each replay inserts a new queued job with the dead job's queue, kind, payload, priority,
-- max_attempts and idempotency_key, attempts = 0 and run_at = now(), and resolves the dead letter
-- (resolved_at, resolved_by, replayed_job_id) in the same transaction.
--
-- The dead-letter rows are locked FOR UPDATE before anything is decided, so two replays of the
-- same dead letter at once serialize: the second sees it resolved and reports already_resolved
-- instead of making a second job. A dead letter whose idempotency key a live job holds
-- (waiting, queued, in_progress) is not replayed and stays open; it is reported with that job's
-- id (idempotency_key_live) and the rest of the batch goes on. Payloads are not re-validated
-- against today's limits: they were valid when enqueued, and a dead letter must stay replayable
-- after a limit is lowered.
--
-- Rows skipped for idempotency_key_live stay open and come first again on the next filtered
-- call: with more than max_rows of them at the head, replay them by id or finish their twins.
CREATE OR REPLACE FUNCTION conveyor.fn_job_dead_letter_replay(
    dead_letter_id bigint  DEFAULT NULL,
    kind           text    DEFAULT NULL,
    queue          text    DEFAULT NULL,
    max_rows       integer DEFAULT 100,
    replayed_by    text    DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
-- ON CONFLICT's index columns cannot be qualified; they name the table's columns, not arguments.
#variable_conflict use_column
DECLARE
    v_max_rows  integer := coalesce(fn_job_dead_letter_replay.max_rows, 100);
    -- session_user, not current_user: inside SECURITY DEFINER current_user is the owner.
    v_by        text    := coalesce(fn_job_dead_letter_replay.replayed_by, session_user::text);
    v_rows      refcursor;
    v_dl        record;
    v_seen      integer := 0;
    v_key       text;
    v_job_id    bigint;
    v_live_id   bigint;
    v_replayed  jsonb   := '[]';
    v_skipped   jsonb   := '[]';
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;

    IF fn_job_dead_letter_replay.dead_letter_id IS NULL
       AND fn_job_dead_letter_replay.kind IS NULL
       AND fn_job_dead_letter_replay.queue IS NULL THEN
        RAISE EXCEPTION 'fn_job_dead_letter_replay: dead_letter_id, kind or queue is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass dead_letter_id => N for one dead letter, or kind => … and/or queue => … '
                         'to replay the open dead letters that match (at most max_rows).';
    END IF;
    IF fn_job_dead_letter_replay.dead_letter_id IS NOT NULL
       AND (fn_job_dead_letter_replay.kind IS NOT NULL OR fn_job_dead_letter_replay.queue IS NOT NULL) THEN
        RAISE EXCEPTION 'fn_job_dead_letter_replay: pass either dead_letter_id or a kind/queue filter, not both'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Replay one dead letter by id, or a filtered set by kind and/or queue.';
    END IF;
    IF v_max_rows NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'fn_job_dead_letter_replay: max_rows is %; it must be from 1 to 10000', v_max_rows
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for 100 and call again for the next rows.';
    END IF;
    IF v_by = '' OR octet_length(v_by) > 255 THEN
        RAISE EXCEPTION 'fn_job_dead_letter_replay: replayed_by must be 1 to 255 bytes'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name who replays (an operator or a tool); pass NULL for the session user.';
    END IF;

    -- Two queries rather than one with a CASE, so each gets its own index: the primary key for
    -- an id, job_dead_letter_open_idx (failed_at, id) for a filter.
    IF fn_job_dead_letter_replay.dead_letter_id IS NOT NULL THEN
        OPEN v_rows FOR
            SELECT dl.id, dl.queue, dl.kind, dl.payload, dl.job, dl.resolved_at, dl.replayed_job_id
              FROM job_dead_letter AS dl
             WHERE dl.id = fn_job_dead_letter_replay.dead_letter_id
               FOR UPDATE OF dl;
    ELSE
        OPEN v_rows FOR
            SELECT dl.id, dl.queue, dl.kind, dl.payload, dl.job, dl.resolved_at, dl.replayed_job_id
              FROM job_dead_letter AS dl
             WHERE dl.resolved_at IS NULL
               AND (fn_job_dead_letter_replay.kind IS NULL OR dl.kind = fn_job_dead_letter_replay.kind)
               AND (fn_job_dead_letter_replay.queue IS NULL OR dl.queue = fn_job_dead_letter_replay.queue)
             ORDER BY dl.failed_at, dl.id
             LIMIT v_max_rows
               FOR UPDATE OF dl;
    END IF;

    LOOP
        FETCH v_rows INTO v_dl;
        IF NOT FOUND THEN
            IF v_seen = 0 AND fn_job_dead_letter_replay.dead_letter_id IS NOT NULL THEN
                CLOSE v_rows;
                RETURN jsonb_build_object('refused', true, 'reason', 'not_found',
                                          'dead_letter_id', fn_job_dead_letter_replay.dead_letter_id);
            END IF;
            EXIT;
        END IF;
        v_seen := v_seen + 1;

        -- Locked now; a replay that committed while this one waited shows here as resolved.
        IF v_dl.resolved_at IS NOT NULL THEN
            v_skipped := v_skipped || jsonb_build_array(jsonb_build_object(
                'dead_letter_id', v_dl.id, 'reason', 'already_resolved',
                'resolved_at', v_dl.resolved_at, 'replayed_job_id', v_dl.replayed_job_id));
            CONTINUE;
        END IF;

        v_key := v_dl.job ->> 'idempotency_key';
        v_job_id := NULL;
        v_live_id := NULL;
        -- As in fn_job_enqueue: the only way round is a live twin that finished between the
        -- INSERT that yielded to it and the SELECT that looked for it.
        FOR v_attempt IN 1..5 LOOP
            INSERT INTO job_queue AS jq
                   (queue, kind, payload, priority, status, run_at, attempts, max_attempts, idempotency_key)
            VALUES (v_dl.queue, v_dl.kind, v_dl.payload,
                    coalesce((v_dl.job ->> 'priority')::smallint, 0), 'queued', now(), 0,
                    (v_dl.job ->> 'max_attempts')::integer, v_key)
            ON CONFLICT (idempotency_key)
               WHERE idempotency_key IS NOT NULL AND status IN ('waiting', 'queued', 'in_progress')
               DO NOTHING
            RETURNING jq.id INTO v_job_id;
            EXIT WHEN v_job_id IS NOT NULL;

            SELECT jq.id INTO v_live_id
              FROM job_queue AS jq
             WHERE jq.idempotency_key = v_key
               AND jq.status IN ('waiting', 'queued', 'in_progress');
            EXIT WHEN v_live_id IS NOT NULL;
        END LOOP;

        IF v_job_id IS NOT NULL THEN
            UPDATE job_dead_letter AS dl
               SET resolved_at = now(), resolved_by = v_by, replayed_job_id = v_job_id
             WHERE dl.id = v_dl.id;
            v_replayed := v_replayed || jsonb_build_array(jsonb_build_object(
                'dead_letter_id', v_dl.id, 'job_id', v_job_id));
        ELSIF v_live_id IS NOT NULL THEN
            v_skipped := v_skipped || jsonb_build_array(jsonb_build_object(
                'dead_letter_id', v_dl.id, 'reason', 'idempotency_key_live',
                'idempotency_key', v_key, 'job_id', v_live_id));
        ELSE
            RAISE EXCEPTION 'fn_job_dead_letter_replay: idempotency_key % of dead letter % kept changing hands; giving up',
                            quote_literal(v_key), v_dl.id
                USING ERRCODE = 'serialization_failure',
                      HINT = 'Retry the transaction.';
        END IF;
    END LOOP;
    CLOSE v_rows;

    RETURN jsonb_build_object('ok', true, 'replayed', v_replayed, 'skipped', v_skipped);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_dead_letter_replay(bigint, text, text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_dead_letter_replay(bigint, text, text, integer, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_dead_letter_replay(bigint, text, text, integer, text) IS
    'Operator: re-enqueue dead letters, one by dead_letter_id or the open ones matching kind and/or '
    'queue (oldest first, max_rows 1..10000, default 100). Each becomes a new queued job (same '
    'queue, kind, payload, priority, max_attempts, idempotency_key; attempts 0) and the dead letter '
    'is resolved (resolved_by = replayed_by, default session_user; replayed_job_id) in the same '
    'transaction. → {"ok":true,"replayed":[{"dead_letter_id","job_id"}],"skipped":[{"dead_letter_id",'
    '"reason":"already_resolved","resolved_at","replayed_job_id"} | {"dead_letter_id","reason":'
    '"idempotency_key_live","idempotency_key","job_id"}]}; unknown id → {"refused":true,"reason":'
    '"not_found","dead_letter_id"}. Neither id nor filter, or both → SQLSTATE 22023. Refuses '
    'job_substrate_disabled while queue.job_substrate.enabled is false. Example: SELECT '
    'conveyor.fn_job_dead_letter_replay(kind => ''email.send'', replayed_by => ''alice'');';
