-- fn_orchestrator_acquire: take or keep the orchestrator leadership (RELIABILITY #37). A leader
-- row with a holder, a term and an expiry rather than a session advisory lock, so it works
-- through a transaction-pooling PgBouncer and survives a database restart without a stale lock:
--   * the current holder, before expiry, renews: same term, expires_at moved to now + lease;
--   * anyone, once the lease has expired (or after a resignation), takes over with term + 1
--     (also the old holder: a leader that let its lease lapse may have been deposed meanwhile,
--     so whatever it does next must carry a new term);
--   * otherwise the candidate is not the leader and learns who is.
-- The leader row is locked (created on first use), so two acquires at once never both win.
-- clock_timestamp() throughout: leadership is liveness, not transaction time.
-- Answer: {"ok": true, "leader": bool, "term", "holder", "expires_at"}.
CREATE OR REPLACE FUNCTION conveyor.fn_orchestrator_acquire(
    candidate     text,
    lease_seconds integer DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_lease integer := fn_orchestrator_acquire.lease_seconds;
    v_row   orchestrator_leader%ROWTYPE;
    v_now   timestamptz;
BEGIN
    IF fn_orchestrator_acquire.candidate IS NULL OR fn_orchestrator_acquire.candidate = ''
       OR octet_length(fn_orchestrator_acquire.candidate) > 255
       OR fn_orchestrator_acquire.candidate ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'fn_orchestrator_acquire: candidate must be 1 to 255 bytes without control characters'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the orchestrator process, e.g. host:pid:random.';
    END IF;
    IF v_lease IS NULL THEN
        v_lease := least(greatest(fn_job__config_number('queue.orchestrator.leader_lease_seconds', 15), 1), 3600);
    ELSIF v_lease NOT BETWEEN 1 AND 3600 THEN
        RAISE EXCEPTION 'fn_orchestrator_acquire: lease_seconds is %; it must be from 1 to 3600', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for queue.orchestrator.leader_lease_seconds; renew well before it runs out.';
    END IF;

    INSERT INTO orchestrator_leader AS ol (name) VALUES ('default')
    ON CONFLICT ON CONSTRAINT orchestrator_leader_pkey DO NOTHING;
    SELECT ol.* INTO v_row FROM orchestrator_leader AS ol WHERE ol.name = 'default' FOR UPDATE;
    v_now := clock_timestamp();  -- after the lock: a wait must not shorten the lease

    IF v_row.holder = fn_orchestrator_acquire.candidate AND v_row.expires_at > v_now THEN
        UPDATE orchestrator_leader AS ol
           SET expires_at = v_now + make_interval(secs => v_lease)
         WHERE ol.name = 'default'
        RETURNING ol.* INTO v_row;
    ELSIF v_row.holder IS NULL OR v_row.expires_at <= v_now THEN
        UPDATE orchestrator_leader AS ol
           SET holder = fn_orchestrator_acquire.candidate,
               term = ol.term + 1,
               acquired_at = v_now,
               expires_at = v_now + make_interval(secs => v_lease)
         WHERE ol.name = 'default'
        RETURNING ol.* INTO v_row;
    ELSE
        RETURN jsonb_build_object('ok', true, 'leader', false, 'term', v_row.term,
                                  'holder', v_row.holder, 'expires_at', v_row.expires_at);
    END IF;
    RETURN jsonb_build_object('ok', true, 'leader', true, 'term', v_row.term,
                              'holder', v_row.holder, 'expires_at', v_row.expires_at);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_orchestrator_acquire(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_orchestrator_acquire(text, integer)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_orchestrator_acquire(text, integer) IS
    'Take or renew orchestrator leadership for lease_seconds (1..3600, NULL = queue.orchestrator.leader_lease_seconds): the holder renews with the same term; after expiry anyone takes over with term + 1. Answer {ok, leader, term, holder, expires_at}. Example: SELECT conveyor.fn_orchestrator_acquire(''host1:4242:ab12cd'')';
