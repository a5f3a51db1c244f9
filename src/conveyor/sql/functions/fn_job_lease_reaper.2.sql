-- fn_job_lease_reaper: rescue jobs whose worker stopped renewing its lease (killed, paused,
-- partitioned). One tick handles up to batch in_progress jobs with lease_expires_at < now(),
-- oldest expiry first:
--   * attempts left → queued again, run_at = now() + the retry delay (fn_job__retry_seconds: the
--     fixed base, or the backoff once queue.retry.backoff_enabled); the attempt was counted at
--     claim and stays counted; lease_token, leased_by and lease_expires_at are cleared, so the
--     old holder's complete/fail/extend now match no row and get lease_lost (fencing);
--     last_error = 'lease expired (worker <leased_by>)';
--   * attempts used up (attempts >= the job's max_attempts, else queue.retry.max_attempts.<kind>,
--     else .default) → job_dead_letter with reason lease_expired, full row kept. A job that
--     kills its worker every time therefore ends here after exactly max_attempts claims;
--   * cancellation requested → cancelled (as fn_job_release and fn_job_fail_transient do: a job
--     someone asked to stop is not run again), lease cleared.
-- It keys ONLY on job_queue.lease_expires_at, never on heartbeats or worker names: a pruned
-- heartbeat row or a restarted worker reusing its name cannot hide an orphaned job, and it is
-- kind-agnostic. Rows are taken FOR UPDATE SKIP LOCKED in (lease_expires_at, id) order through
-- job_queue_lease_expires_idx, so reapers running at once split the work and rescue each job
-- exactly once, and a row some other transaction holds (a worker extending its lease right now,
-- a stuck session) is stepped over instead of blocking the rest; a lease renewed meanwhile is
-- re-checked after the lock and left alone. "more" says whether another expired, unlocked job
-- is waiting beyond this batch (probed with one more SKIP LOCKED row), so a caller may loop
-- while more is true without spinning on rows someone else holds.
CREATE OR REPLACE FUNCTION conveyor.fn_job_lease_reaper(
    batch integer DEFAULT 1000
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_batch         integer := coalesce(fn_job_lease_reaper.batch, 1000);
    v_job           record;
    v_error         text;
    v_rescued       integer := 0;
    v_dead_lettered integer := 0;
    v_cancelled     integer := 0;
    v_more          boolean;
BEGIN
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF NOT fn_config_enabled('queue.lease_reaper.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'lease_reaper_disabled',
                                  'flag', 'queue.lease_reaper.enabled');
    END IF;
    IF v_batch NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'fn_job_lease_reaper: batch is %; it must be from 1 to 10000', v_batch
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for 1000 and call again while the answer says "more": true.';
    END IF;

    FOR v_job IN
        SELECT jq.id, jq.kind, jq.attempts, jq.max_attempts, jq.lease_token, jq.leased_by,
               jq.cancel_requested_at
          FROM job_queue AS jq
         WHERE jq.status = 'in_progress'
           AND jq.lease_expires_at < now()
         ORDER BY jq.lease_expires_at, jq.id
         LIMIT v_batch
           FOR UPDATE OF jq SKIP LOCKED
    LOOP
        v_error := left(format('lease expired (worker %s)', coalesce(v_job.leased_by, 'unknown')), 2000);

        IF v_job.cancel_requested_at IS NOT NULL THEN
            UPDATE job_queue AS jq
               SET status = 'cancelled',
                   finished_at = now(),
                   lease_token = NULL,
                   leased_by = NULL,
                   lease_expires_at = NULL,
                   last_error = v_error
             WHERE jq.id = v_job.id;
            v_cancelled := v_cancelled + 1;
        ELSIF v_job.attempts >= fn_job__max_attempts(v_job.kind, v_job.max_attempts) THEN
            -- The row is locked by this loop and still holds v_job.lease_token, so the fenced
            -- move cannot miss it.
            PERFORM fn_job__dead_letter(v_job.id, v_job.lease_token, 'lease_expired', v_error);
            v_dead_lettered := v_dead_lettered + 1;
        ELSE
            UPDATE job_queue AS jq
               SET status = 'queued',
                   run_at = now() + make_interval(secs => fn_job__retry_seconds(v_job.attempts)::double precision),
                   lease_token = NULL,
                   leased_by = NULL,
                   lease_expires_at = NULL,
                   last_error = v_error
             WHERE jq.id = v_job.id;
            v_rescued := v_rescued + 1;
        END IF;
    END LOOP;

    -- Rows handled above are no longer in_progress in this transaction's view, so this finds
    -- only an expired job that is still waiting (rows other sessions hold are skipped).
    PERFORM 1
       FROM job_queue AS jq
      WHERE jq.status = 'in_progress'
        AND jq.lease_expires_at < now()
      LIMIT 1
        FOR UPDATE OF jq SKIP LOCKED;
    v_more := FOUND;

    RETURN jsonb_build_object('ok', true, 'rescued', v_rescued, 'dead_lettered', v_dead_lettered,
                              'cancelled', v_cancelled, 'more', v_more);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job_lease_reaper(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_job_lease_reaper(integer) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_job_lease_reaper(integer) IS
    'Orchestrator tick: rescue up to batch (1..10000, default 1000) in_progress jobs whose '
    'lease_expires_at < now(), oldest first, FOR UPDATE SKIP LOCKED. Attempts left → queued '
    '(attempt kept, run_at = now() + retry delay, lease cleared: the old token gets lease_lost); '
    'used up → job_dead_letter reason lease_expired; cancellation requested → cancelled. → '
    '{"ok":true,"rescued":n,"dead_lettered":m,"cancelled":k,"more":bool} (more: another expired '
    'job is waiting). Refuses job_substrate_disabled, then lease_reaper_disabled while '
    'queue.lease_reaper.enabled is false. Keys only on job_queue.lease_expires_at (never on '
    'heartbeats). Example: SELECT conveyor.fn_job_lease_reaper();';
