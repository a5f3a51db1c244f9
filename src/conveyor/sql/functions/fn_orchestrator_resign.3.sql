-- fn_orchestrator_resign: a leader stepping down (graceful shutdown), so another orchestrator
-- takes over at its next acquire instead of waiting for the lease to run out. Only the holder
-- of that term may resign; anything else changes nothing (resigned: false). The term is kept,
-- so the next leader's term is higher.
-- Answer: {"ok": true, "resigned": bool, "term"}.
CREATE OR REPLACE FUNCTION conveyor.fn_orchestrator_resign(
    candidate text,
    term      bigint
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    UPDATE orchestrator_leader AS ol
       SET holder = NULL,
           expires_at = clock_timestamp()
     WHERE ol.name = 'default'
       AND ol.holder = fn_orchestrator_resign.candidate
       AND ol.term = fn_orchestrator_resign.term;
    RETURN jsonb_build_object('ok', true, 'resigned', FOUND, 'term', fn_orchestrator_resign.term);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_orchestrator_resign(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_orchestrator_resign(text, bigint)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_orchestrator_resign(text, bigint) IS
    'Give up orchestrator leadership held by candidate under term (anything else is a no-op, resigned: false); the next acquire takes over with term + 1. Answer {ok, resigned, term}. Example: SELECT conveyor.fn_orchestrator_resign(''host1:4242:ab12cd'', 7)';
