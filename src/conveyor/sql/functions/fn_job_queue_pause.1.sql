-- fn_job_queue_pause: stop claims from one queue without stopping any worker (fn_job_queue_resume
-- restarts them). The paused set is the dot_config key queue.paused_queues (a JSON array of
-- queue names), so the change is recorded with who made it and when, like every other setting.
-- Jobs can still be enqueued to a paused queue; they wait until it is resumed.
CREATE OR REPLACE FUNCTION conveyor.fn_job_queue_pause(
    queue     text,
    paused_by text DEFAULT NULL
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
    IF fn_job_queue_pause.queue IS NULL OR fn_job_queue_pause.queue !~ '^[a-z0-9][a-z0-9_.-]*$'
       OR octet_length(fn_job_queue_pause.queue) > 63 THEN
        RAISE EXCEPTION 'fn_job_queue_pause: queue % is not a valid queue name',
                        quote_nullable(fn_job_queue_pause.queue)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Queue names are 1 to 63 bytes of a-z, 0-9, _, . and -, starting with a letter or digit.';
    END IF;
    SELECT dc.value INTO v_paused FROM dot_config AS dc WHERE dc.key = 'queue.paused_queues' FOR UPDATE;
    v_paused := coalesce(v_paused, '[]'::jsonb);
    IF v_paused ? fn_job_queue_pause.queue THEN
        RETURN jsonb_build_object('ok', true, 'queue', fn_job_queue_pause.queue, 'paused', true,
                                  'already', true);
    END IF;
    INSERT INTO dot_config AS dc (key, value, description, updated_at, updated_by)
    VALUES ('queue.paused_queues', v_paused || to_jsonb(fn_job_queue_pause.queue),
            'Queues whose jobs fn_job_claim leaves alone (fn_job_queue_pause / fn_job_queue_resume).',
            now(), coalesce(nullif(fn_job_queue_pause.paused_by, ''), session_user))
    ON CONFLICT (key) DO UPDATE
       SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by;
    RETURN jsonb_build_object('ok', true, 'queue', fn_job_queue_pause.queue, 'paused', true);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_queue_pause(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_queue_pause(text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_queue_pause(text, text) IS
    'Stop claims from queue (workers keep running). → {"ok":true,"queue","paused":true[,"already":true]}. '
    'Refuses job_substrate_disabled while the substrate is off. '
    'Example: SELECT conveyor.fn_job_queue_pause(''email'', paused_by => ''ops'')';
