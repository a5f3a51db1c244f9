-- fn_cron_next: the first time strictly after `after` that the cron expression names, in UTC
-- whatever the session's TimeZone. 5 fields (minute hour day-of-month month day-of-week) with *,
-- N, N-M, lists, /STEP, month and weekday names (jan, mon, …; 0 and 7 are Sunday), or @hourly,
-- @daily, @weekly, @monthly, @yearly. When day-of-month and day-of-week are both restricted a
-- day matches if either does (standard cron OR rule); a field beginning with * (also */2) counts
-- as unrestricted for that rule. NULL when the expression never fires within 50 years
-- ('0 0 31 2 *'). A bad expression is SQLSTATE 22023 naming the field and value.
CREATE OR REPLACE FUNCTION conveyor.fn_cron_next(
    cron  text,
    after timestamptz DEFAULT NULL
) RETURNS timestamptz
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    RETURN fn_cron__walk(fn_cron_next.cron, coalesce(fn_cron_next.after, now()), true);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_cron_next(text, timestamptz) FROM PUBLIC;
-- conveyor_reader: v_job_periodic calls it as the reader.
GRANT EXECUTE ON FUNCTION conveyor.fn_cron_next(text, timestamptz) TO conveyor_admin, conveyor_reader;
COMMENT ON FUNCTION conveyor.fn_cron_next(text, timestamptz) IS
    'Next time strictly after `after` (NULL: now()) named by a cron expression, in UTC: 5 fields minute hour day-of-month month day-of-week with *, N, N-M, lists, /STEP, jan-dec, sun-sat (0 and 7 Sunday), or @hourly/@daily/@weekly/@monthly/@yearly; dom/dow OR rule when both are restricted. NULL when it never fires within 50 years. Bad expression: SQLSTATE 22023 naming the field. Example: SELECT conveyor.fn_cron_next(''*/15 9-17 * * mon-fri'', now())';
