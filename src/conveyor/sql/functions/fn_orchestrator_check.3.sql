-- fn_orchestrator_check: is candidate still the leader under term, with a lease that has not
-- run out (clock_timestamp())? A deposed leader calls this before each step and stops on false:
-- after a takeover the term differs, after expiry or resignation the lease is over.
CREATE OR REPLACE FUNCTION conveyor.fn_orchestrator_check(
    candidate text,
    term      bigint
) RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT 1
                     FROM orchestrator_leader AS ol
                    WHERE ol.name = 'default'
                      AND ol.holder = fn_orchestrator_check.candidate
                      AND ol.term = fn_orchestrator_check.term
                      AND ol.expires_at > clock_timestamp());
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_orchestrator_check(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_orchestrator_check(text, bigint)
    TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_orchestrator_check(text, bigint) IS
    'True iff candidate holds the orchestrator leadership under term and its lease has not expired (clock_timestamp()). Example: SELECT conveyor.fn_orchestrator_check(''host1:4242:ab12cd'', 7)';
