-- fn_customer__release_send: a message (locked by the caller) now holds a valid approval; make
-- sure exactly one job will send it.
--   * the workflow's approve step is queued: complete it (fn_job_workflow_complete_step), which
--     releases the send step in this transaction;
--   * it still waits on the draft step: nothing now; job_queue_customer_approve_released_trg
--     completes it when it is released (fn_customer__approve_step_released);
--   * it has ended and send_job_id names a live job (waiting, queued, running): that job sends;
--   * otherwise (the send job spent its turn on a refused begin, or ended): enqueue a fresh
--     customer_message_send job on queue customer and record it in send_job_id.
-- → {"released": "workflow_step"|"on_step_release"|"pending_job"|"new_job", "job_id"?}.
CREATE OR REPLACE FUNCTION conveyor.fn_customer__release_send(message_id bigint, actor text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_msg    customer_message;
    v_step   record;
    v_answer jsonb;
    v_job    bigint;
BEGIN
    SELECT cm.* INTO v_msg FROM customer_message AS cm WHERE cm.id = fn_customer__release_send.message_id;

    SELECT st.step_key, st.job_id, jq.status INTO v_step
      FROM job_workflow_step AS st
      LEFT JOIN job_queue AS jq ON jq.id = st.job_id
     WHERE st.workflow_id = v_msg.workflow_id
       AND st.kind = 'customer_message_approve';
    IF FOUND AND v_step.status = 'queued' THEN
        v_answer := fn_job_workflow_complete_step(v_msg.workflow_id, v_step.step_key,
                                                  fn_customer__release_send.actor,
                                                  jsonb_build_object('draft_sha256', v_msg.approved_sha256));
        IF v_answer ->> 'ok' = 'true' THEN
            RETURN jsonb_build_object('released', 'workflow_step', 'job_id', v_step.job_id);
        END IF;
        RETURN jsonb_build_object('released', false, 'answer', v_answer);
    END IF;
    IF FOUND AND v_step.status = 'waiting' THEN
        RETURN jsonb_build_object('released', 'on_step_release', 'job_id', v_step.job_id);
    END IF;

    SELECT jq.id INTO v_job
      FROM job_queue AS jq
     WHERE jq.id = v_msg.send_job_id
       AND jq.status IN ('waiting', 'queued', 'in_progress');
    IF FOUND THEN
        RETURN jsonb_build_object('released', 'pending_job', 'job_id', v_job);
    END IF;

    v_answer := fn_job_enqueue(kind => 'customer_message_send',
                               payload => jsonb_build_object('message_id', v_msg.id),
                               queue => 'customer');
    IF v_answer ->> 'ok' IS DISTINCT FROM 'true' THEN
        RAISE EXCEPTION 'fn_customer_message_approve: message %: the send job could not be enqueued: %',
                        v_msg.id, v_answer::text
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Switch queue.job_substrate.enabled on, then approve again.';
    END IF;
    v_job := (v_answer ->> 'job_id')::bigint;
    UPDATE customer_message AS cm SET send_job_id = v_job WHERE cm.id = v_msg.id;
    RETURN jsonb_build_object('released', 'new_job', 'job_id', v_job);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer__release_send(bigint, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_customer__release_send(bigint, text) IS
    'Private: an approved message gets exactly one job that sends it (complete the workflow''s approve step, wait for its release, keep the live send job, or enqueue a fresh one)';
