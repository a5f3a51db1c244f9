-- fn_customer__approve_step_released: trigger function of job_queue_customer_approve_released_trg
-- (deferred to commit). The approve step of a message's workflow was released after the message
-- already held a valid approval (auto-approval inside the draft job's transaction): complete the
-- step now, as fn_job_workflow_complete_step would, so the send step is released. A message
-- without a valid approval leaves the step queued for a person.
CREATE OR REPLACE FUNCTION conveyor.fn_customer__approve_step_released()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_msg customer_message;
BEGIN
    IF jsonb_typeof(NEW.payload -> 'message_id') <> 'number' THEN
        RETURN NULL;
    END IF;
    v_msg := fn_customer__lock((NEW.payload ->> 'message_id')::bigint);
    IF v_msg.id IS NOT NULL AND v_msg.state = 'approved' AND v_msg.approved_sha256 = v_msg.draft_sha256 THEN
        PERFORM fn_customer__release_send(v_msg.id, v_msg.approved_by);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer__approve_step_released() FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_customer__approve_step_released() IS
    'Private: trigger (deferred) completing a released approve step whose message is already approved';
