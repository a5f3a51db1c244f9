-- fn_job_queue_resume: let workers claim from a queue fn_job_queue_pause paused (its name leaves
-- the dot_config key queue.paused_queues, recorded with who did it and when). Resuming a queue
-- that is not paused changes nothing and says so (already).
CREATE OR REPLACE FUNCTION conveyor.fn_job_queue_resume(
    queue      text,
    resumed_by text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_paused jsonb;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF fn_job_queue_resume.queue IS NULL THEN
        RAISE EXCEPTION 'fn_job_queue_resume: queue is required'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Name the queue to resume.';
    END IF;
    SELECT dc.value INTO v_paused FROM dot_config AS dc WHERE dc.key = 'queue.paused_queues' FOR UPDATE;
    IF v_paused IS NULL OR NOT v_paused ? fn_job_queue_resume.queue THEN
        RETURN jsonb_build_object('ok', true, 'queue', fn_job_queue_resume.queue, 'paused', false,
                                  'already', true);
    END IF;
    UPDATE dot_config AS dc
       SET value = v_paused - fn_job_queue_resume.queue, updated_at = now(),
           updated_by = coalesce(nullif(fn_job_queue_resume.resumed_by, ''), session_user)
     WHERE dc.key = 'queue.paused_queues';
    RETURN jsonb_build_object('ok', true, 'queue', fn_job_queue_resume.queue, 'paused', false);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_queue_resume(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_queue_resume(text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_queue_resume(text, text) IS
    'Let workers claim from queue again. → {"ok":true,"queue","paused":false[,"already":true]}. '
    'Refuses job_substrate_disabled while the substrate is off. '
    'Example: SELECT conveyor.fn_job_queue_resume(''email'', resumed_by => ''ops'')';
