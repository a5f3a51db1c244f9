-- fn_job__requeue: private helper of fn_job_snooze and fn_job_release. The lease holder puts an
-- in-progress job back to 'queued' at run_at (NULL keeps its run_at, and so its place in line)
-- without spending the attempt the claim counted. A release (counted) is also counted in
-- releases, and a job already released queue.retry.max_releases times is dead-lettered instead
-- (max_releases_exceeded), so a job whose worker is drained on every run still ends. A snooze is
-- not counted: it is the handler's own timed decision (the pilot waits that way while it is
-- switched off), and it spends the wait it asked for. A job whose
-- cancellation was requested is not queued again: it ends cancelled. A stale token gets
-- lease_lost and changes nothing. Callers check the gate and their own arguments first.
CREATE OR REPLACE FUNCTION conveyor.fn_job__requeue(
    job_id      bigint,
    lease_token uuid,
    run_at      timestamptz,
    counted     boolean
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_max_releases   numeric := fn_job__config_number('queue.retry.max_releases', 100);
    v_run_at         timestamptz;
    v_dead_letter_id bigint;
BEGIN
    UPDATE job_queue AS jq
       SET status = 'queued',
           run_at = coalesce(fn_job__requeue.run_at, jq.run_at),
           attempts = greatest(jq.attempts - 1, 0),  -- the job did not run: not an attempt
           releases = jq.releases + fn_job__requeue.counted::integer,
           lease_token = NULL,
           leased_by = NULL,
           lease_expires_at = NULL
     WHERE jq.id = fn_job__requeue.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job__requeue.lease_token  -- fencing
       AND jq.cancel_requested_at IS NULL
       AND (NOT fn_job__requeue.counted OR jq.releases < v_max_releases)
    RETURNING jq.run_at INTO v_run_at;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job__requeue.job_id, 'status', 'queued',
                                  'run_at', v_run_at);
    END IF;

    UPDATE job_queue AS jq
       SET status = 'cancelled', finished_at = now(), lease_expires_at = NULL
     WHERE jq.id = fn_job__requeue.job_id
       AND jq.status = 'in_progress'
       AND jq.lease_token = fn_job__requeue.lease_token
       AND jq.cancel_requested_at IS NOT NULL;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job__requeue.job_id, 'status', 'cancelled');
    END IF;

    -- Still ours, not cancelled, yet not requeued: it has used up its releases.
    v_dead_letter_id := fn_job__dead_letter(
        fn_job__requeue.job_id, fn_job__requeue.lease_token, 'max_releases_exceeded',
        format('released unfinished %s times (queue.retry.max_releases = %s)',
               v_max_releases, v_max_releases));
    IF v_dead_letter_id IS NOT NULL THEN
        RETURN jsonb_build_object('ok', true, 'job_id', fn_job__requeue.job_id,
                                  'status', 'dead_letter', 'reason', 'max_releases_exceeded',
                                  'dead_letter_id', v_dead_letter_id);
    END IF;
    RETURN jsonb_build_object('refused', true, 'reason', 'lease_lost', 'job_id', fn_job__requeue.job_id);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__requeue(bigint, uuid, timestamptz, boolean) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__requeue(bigint, uuid, timestamptz, boolean) IS
    'Private: shared body of fn_job_snooze and fn_job_release (requeue without spending the attempt, '
    'counting a release, counted; dead-letter max_releases_exceeded past queue.retry.max_releases; '
    'end cancelled when a cancel was requested; lease_lost on a stale token).';
