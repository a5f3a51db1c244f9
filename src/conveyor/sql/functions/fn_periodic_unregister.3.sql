-- fn_periodic_unregister: remove a periodic job. Jobs it already enqueued are left alone.
-- Answer: {"ok": true, "name", "removed": bool} (false: there was no such periodic job).
CREATE OR REPLACE FUNCTION conveyor.fn_periodic_unregister(
    name text
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    DELETE FROM job_periodic AS jp WHERE jp.name = fn_periodic_unregister.name;
    RETURN jsonb_build_object('ok', true, 'name', fn_periodic_unregister.name, 'removed', FOUND);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_periodic_unregister(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_periodic_unregister(text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_periodic_unregister(text) IS
    'Remove a periodic job (jobs already enqueued stay). Answer {ok, name, removed}. Example: SELECT conveyor.fn_periodic_unregister(''reports.nightly'')';
