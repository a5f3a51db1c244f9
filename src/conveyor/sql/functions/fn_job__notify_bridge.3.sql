-- fn_job__notify_bridge: trigger function of the NOTIFY bridge (DP1 layer 2): STATEMENT-level
-- AFTER INSERT on job_queue with the inserted rows as the transition table new_jobs. When
-- queue.notify.bridge_enabled is true and the statement inserted jobs that are ready now
-- (status queued, run_at <= now()), it sends ONE pg_notify('conveyor_jobs', <queues>) for the
-- whole statement: the distinct queue names, sorted, comma-separated, cut at a name boundary
-- before 1,000 bytes with a trailing '*' item meaning "and more" (NOTIFY refuses 8,000 bytes;
-- queue names are validated ≤ 63 bytes). The channel is a constant, never a queue name.
-- A hint only: NOTIFY is delivered at commit (not at all on rollback), PostgreSQL folds equal
-- notifications within a transaction, and a listener must not rely on the payload: polling is
-- the source of truth (RELIABILITY #34). Not covered, by design (the poll finds them):
-- scheduled jobs becoming due, and jobs put back by UPDATE — fn_job_release, fn_job_snooze,
-- fn_job_fail_transient, fn_job_lease_reaper and workflow steps leaving 'waiting'. Jobs made by
-- fn_job_enqueue, fn_job_enqueue_many and fn_job_dead_letter_replay are INSERTs and covered.
-- With the flag off the cost is one dot_config lookup per statement (plus PostgreSQL's capture
-- of the transition table).
-- Private: no EXECUTE grant (triggers need none).
CREATE OR REPLACE FUNCTION conveyor.fn_job__notify_bridge()
RETURNS trigger
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_payload text := '';
    v_queue   text;
BEGIN
    IF NOT fn_config_enabled('queue.notify.bridge_enabled') THEN
        RETURN NULL;
    END IF;
    FOR v_queue IN
        SELECT DISTINCT nj.queue
          FROM new_jobs AS nj
         WHERE nj.status = 'queued' AND nj.run_at <= now()
         ORDER BY nj.queue
    LOOP
        IF octet_length(v_payload) + octet_length(v_queue) + 1 > 1000 THEN
            v_payload := CASE WHEN v_payload = '' THEN '*' ELSE v_payload || ',*' END;
            EXIT;
        END IF;
        v_payload := CASE WHEN v_payload = '' THEN v_queue ELSE v_payload || ',' || v_queue END;
    END LOOP;
    IF v_payload <> '' THEN
        PERFORM pg_notify('conveyor_jobs', v_payload);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_job__notify_bridge() FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_job__notify_bridge() IS
    'Trigger of the NOTIFY bridge (statement-level AFTER INSERT on job_queue): while queue.notify.bridge_enabled, one pg_notify(''conveyor_jobs'', ''<queue>,<queue>…'') per statement that inserted ready jobs (payload < 1,000 bytes, '',*'' = more). A wake-up hint: delivered at commit; requeues by UPDATE are not covered (polling is).';
