-- fn_orchestrator_check: is candidate still the leader under term, with a lease that has not
-- run out (clock_timestamp())? A leader calls this before each step and stops unless the answer
-- says leader: after a takeover the term differs, after expiry or resignation the lease is over.
-- Answer: {"ok": true, "leader": true, "term", "expires_at"}, or {"ok": true, "leader": false,
-- "reason", "term", "holder"} with the row's current term and holder and reason one of
--   deposed        another term began (a takeover, by someone else or by candidate itself);
--   lease_expired  candidate's lease under term ran out and nobody has taken over yet;
--   resigned       the holder of term stepped down (fn_orchestrator_resign);
--   not_holder     term is current but held by someone else (a wrong candidate name).
CREATE OR REPLACE FUNCTION conveyor.fn_orchestrator_check(
    candidate text,
    term      bigint
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_row orchestrator_leader%ROWTYPE;
BEGIN
    SELECT ol.* INTO v_row FROM orchestrator_leader AS ol WHERE ol.name = 'default';
    IF FOUND AND v_row.holder = fn_orchestrator_check.candidate
       AND v_row.term = fn_orchestrator_check.term AND v_row.expires_at > clock_timestamp() THEN
        RETURN jsonb_build_object('ok', true, 'leader', true, 'term', v_row.term,
                                  'expires_at', v_row.expires_at);
    END IF;
    RETURN jsonb_build_object(
        'ok', true, 'leader', false,
        'reason', CASE WHEN v_row.term IS DISTINCT FROM fn_orchestrator_check.term THEN 'deposed'
                       WHEN v_row.holder IS NULL THEN 'resigned'
                       WHEN v_row.holder <> fn_orchestrator_check.candidate THEN 'not_holder'
                       ELSE 'lease_expired' END,
        'term', v_row.term, 'holder', v_row.holder);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_orchestrator_check(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_orchestrator_check(text, bigint)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_orchestrator_check(text, bigint) IS
    'Whether candidate still holds the orchestrator leadership under term with an unexpired lease (clock_timestamp()). Answer {ok, leader: true, term, expires_at} or {ok, leader: false, reason: deposed | lease_expired | resigned | not_holder, term, holder}. Example: SELECT conveyor.fn_orchestrator_check(''host1:4242:ab12cd'', 7)';
