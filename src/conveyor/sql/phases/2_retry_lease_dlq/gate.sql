-- Phase 2 verification gate (ROADMAP §4.2), one row per check: (item, passed, detail).
--   1. a synthetic transient failure: a job is claimed with a short lease, the lease expires
--      (lease_expires_at backdated), the lease reaper rescues it → queued again, attempt kept,
--      lease cleared, and re-claimable with a new token (the old token then gets lease_lost);
--   2. the permanent failure path: fn_job_fail_permanent → the row is in job_dead_letter
--      (reason permanent_failure, full row kept) and gone from job_queue;
--   3. replay: fn_job_dead_letter_replay → the job is back in job_queue with attempts = 0 and the
--      dead letter is resolved, pointing at it.
-- Everything happens on throw-away rows in the queue conveyor_gate, with the flags enabled inside
-- this transaction, which is rolled back: running this file leaves no trace. The rescued row's
-- lease is backdated to -infinity and the reaper runs with batch 1, so it takes that row first
-- even when other queues hold expired leases of their own (their rows are only locked, and the
-- rollback undoes whatever the reaper did to them). Claims are restricted to the gate's queue and
-- kind. Each check runs in its own block, so one failing (even with an error) fails only its row;
-- the dead letter of check 2 is handed to check 3 through pg_temp.gate_state.
BEGIN;

\ir ../../gate_probes.sql

-- The gate must pass on a freshly applied phase, where every flag is off.
UPDATE conveyor.dot_config AS dc SET value = 'true'
 WHERE dc.key IN ('queue.job_substrate.enabled', 'queue.lease_reaper.enabled');
-- Nor may a pause of the gate's own queue (fn_job_queue_pause) stop the re-claim.
UPDATE conveyor.dot_config AS dc SET value = dc.value - 'conveyor_gate'
 WHERE dc.key = 'queue.paused_queues' AND jsonb_typeof(dc.value) = 'array';

-- 1. Transient failure: lease expires → reaper rescues → re-claimable.
DO $$
DECLARE
    c_queue   CONSTANT text := 'conveyor_gate';
    c_kind    CONSTANT text := 'conveyor.gate.phase2';
    v_item    text;
    v_answer  jsonb;
    v_claim   jsonb;
    v_job_id  bigint;
    v_token   uuid;
    v_token2  uuid;
    v_row     record;
    v_stale   jsonb;
    v_ok      boolean;
BEGIN
    v_item := 'transient failure: an expired lease is rescued by fn_job_lease_reaper and the job is re-claimable';
    v_answer := conveyor.fn_job_enqueue(kind => c_kind, payload => '{"gate": "transient"}',
                                        queue => c_queue, priority => 1000, max_attempts => 3);
    v_job_id := (v_answer ->> 'job_id')::bigint;
    v_claim := conveyor.fn_job_claim(worker => 'conveyor-gate-a', queues => ARRAY[c_queue],
                                     kinds => ARRAY[c_kind], batch => 1, lease_seconds => 1);
    v_token := (v_claim #>> '{jobs,0,lease_token}')::uuid;
    IF v_job_id IS NULL OR (v_claim #>> '{jobs,0,job_id}')::bigint IS DISTINCT FROM v_job_id THEN
        RAISE EXCEPTION 'setup: enqueue answered %, claim answered %', v_answer, v_claim;
    END IF;

    -- The worker "dies": its lease runs out. Backdated past every real lease, so the
    -- reaper's batch of 1 is this row.
    UPDATE conveyor.job_queue AS jq SET lease_expires_at = '-infinity' WHERE jq.id = v_job_id;
    v_answer := conveyor.fn_job_lease_reaper(batch => 1);

    SELECT jq.status, jq.attempts, jq.lease_token, jq.leased_by, jq.lease_expires_at,
           jq.last_error, jq.run_at
      INTO v_row
      FROM conveyor.job_queue AS jq WHERE jq.id = v_job_id;
    v_ok := (v_answer ->> 'rescued')::integer = 1
            AND v_row.status = 'queued' AND v_row.attempts = 1
            AND v_row.lease_token IS NULL AND v_row.leased_by IS NULL AND v_row.lease_expires_at IS NULL
            AND v_row.last_error = 'lease expired (worker conveyor-gate-a)'
            AND v_row.run_at >= now();

    -- Its retry delay elapses (the backoff is checked by the tests; here only the path).
    UPDATE conveyor.job_queue AS jq SET run_at = now() - interval '1 second' WHERE jq.id = v_job_id;
    v_claim := conveyor.fn_job_claim(worker => 'conveyor-gate-b', queues => ARRAY[c_queue],
                                     kinds => ARRAY[c_kind], batch => 1);
    v_token2 := (v_claim #>> '{jobs,0,lease_token}')::uuid;
    v_stale := conveyor.fn_job_complete(job_id => v_job_id, lease_token => v_token);
    v_ok := v_ok
            AND (v_claim #>> '{jobs,0,job_id}')::bigint = v_job_id
            AND (v_claim #>> '{jobs,0,attempts}')::integer = 2
            AND v_token2 IS NOT NULL AND v_token2 <> v_token
            AND v_stale ->> 'reason' = 'lease_lost';
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item, v_ok,
        format('reaper %s; after reap: status %s, attempts %s, lease cleared %s, last_error %L; '
               're-claim %s; old token on complete: %s',
               v_answer, v_row.status, v_row.attempts,
               v_row.lease_token IS NULL AND v_row.lease_expires_at IS NULL, v_row.last_error,
               CASE WHEN v_token2 IS NULL THEN 'got nothing'
                    ELSE format('job %s, attempts %s, new token %s', v_claim #>> '{jobs,0,job_id}',
                                v_claim #>> '{jobs,0,attempts}', v_token2 <> v_token) END,
               v_stale));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

-- 2. Permanent failure → job_dead_letter.
DO $$
DECLARE
    c_queue   CONSTANT text := 'conveyor_gate';
    c_kind    CONSTANT text := 'conveyor.gate.phase2';
    v_item    text;
    v_answer  jsonb;
    v_claim   jsonb;
    v_job_id  bigint;
    v_token   uuid;
    v_dl_id   bigint;
    v_row     record;
    v_ok      boolean;
BEGIN
    v_item := 'permanent failure: fn_job_fail_permanent moves the job to job_dead_letter';
    v_answer := conveyor.fn_job_enqueue(kind => c_kind, payload => '{"gate": "permanent"}',
                                        queue => c_queue, priority => 1000,
                                        idempotency_key => 'conveyor-gate-phase2-permanent');
    v_job_id := (v_answer ->> 'job_id')::bigint;
    v_claim := conveyor.fn_job_claim(worker => 'conveyor-gate-a', queues => ARRAY[c_queue],
                                     kinds => ARRAY[c_kind], batch => 1);
    v_token := (v_claim #>> '{jobs,0,lease_token}')::uuid;
    IF v_job_id IS NULL OR (v_claim #>> '{jobs,0,job_id}')::bigint IS DISTINCT FROM v_job_id THEN
        RAISE EXCEPTION 'setup: enqueue answered %, claim answered %', v_answer, v_claim;
    END IF;
    v_answer := conveyor.fn_job_fail_permanent(job_id => v_job_id, lease_token => v_token,
                                               error => 'conveyor gate: permanent failure');
    v_dl_id := (v_answer ->> 'dead_letter_id')::bigint;
    SELECT dl.reason, dl.error, dl.attempts, dl.job ->> 'id' AS job_field, dl.resolved_at
      INTO v_row
      FROM conveyor.job_dead_letter AS dl WHERE dl.id = v_dl_id AND dl.job_id = v_job_id;
    v_ok := FOUND AND v_row.reason = 'permanent_failure'
            AND v_row.error = 'conveyor gate: permanent failure'
            AND v_row.attempts = 1 AND v_row.job_field = v_job_id::text AND v_row.resolved_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM conveyor.job_queue AS jq WHERE jq.id = v_job_id);
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item, v_ok,
        format('fail_permanent %s; dead letter %s: reason %s, attempts %s, full row kept %s; job row gone %s',
               v_answer, v_dl_id, v_row.reason, v_row.attempts, v_row.job_field = v_job_id::text,
               NOT EXISTS (SELECT 1 FROM conveyor.job_queue AS jq WHERE jq.id = v_job_id)));
    INSERT INTO pg_temp.gate_state (key, value) VALUES ('dead_letter', v_dl_id);
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

-- 3. Replay → back in job_queue with attempts = 0, the dead letter resolved.
DO $$
DECLARE
    c_queue   CONSTANT text := 'conveyor_gate';
    c_kind    CONSTANT text := 'conveyor.gate.phase2';
    v_item    text;
    v_answer  jsonb;
    v_dl_id   bigint;
    v_new_id  bigint;
    v_row     record;
    v_ok      boolean;
BEGIN
    v_item := 'replay: fn_job_dead_letter_replay puts the job back in job_queue with attempts = 0';
    v_dl_id := (SELECT gs.value FROM pg_temp.gate_state AS gs WHERE gs.key = 'dead_letter');
    IF v_dl_id IS NULL THEN
        RAISE EXCEPTION 'no dead letter from the permanent failure check to replay';
    END IF;
    v_answer := conveyor.fn_job_dead_letter_replay(dead_letter_id => v_dl_id, replayed_by => 'conveyor gate');
    v_new_id := (v_answer #>> '{replayed,0,job_id}')::bigint;
    SELECT jq.status, jq.attempts, jq.queue, jq.kind, jq.payload, jq.idempotency_key,
           dl.resolved_at, dl.resolved_by, dl.replayed_job_id
      INTO v_row
      FROM conveyor.job_queue AS jq
      JOIN conveyor.job_dead_letter AS dl ON dl.id = v_dl_id
     WHERE jq.id = v_new_id;
    v_ok := FOUND AND v_row.status = 'queued' AND v_row.attempts = 0
            AND v_row.queue = c_queue AND v_row.kind = c_kind
            AND v_row.payload = '{"gate": "permanent"}'
            AND v_row.idempotency_key = 'conveyor-gate-phase2-permanent'
            AND v_row.resolved_at IS NOT NULL AND v_row.resolved_by = 'conveyor gate'
            AND v_row.replayed_job_id = v_new_id;
    INSERT INTO pg_temp.gate_result (item, passed, detail)
    VALUES (v_item, v_ok,
        format('replay %s; job %s: status %s, attempts %s; dead letter resolved %s by %L, replayed_job_id %s',
               v_answer, v_new_id, v_row.status, v_row.attempts, v_row.resolved_at IS NOT NULL,
               v_row.resolved_by, v_row.replayed_job_id));
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.gate_result (item, passed, detail) VALUES (v_item, false, 'error: ' || SQLERRM);
END;
$$;

SELECT g.item, g.passed, g.detail FROM pg_temp.gate_result AS g ORDER BY g.seq;

ROLLBACK;
