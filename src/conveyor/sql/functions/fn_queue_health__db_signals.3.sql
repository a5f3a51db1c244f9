-- fn_queue_health__db_signals: the database-wide signals v_queue_health shows on every row.
--   oldest_xmin_age_seconds: age of the oldest transaction in this database that holds back
--     vacuum (a backend with an xmin or an xid, other than the caller's own, or a prepared
--     transaction): the long transaction that bloats job_queue (RELIABILITY #29). NULL: none.
--   job_queue_dead_tuple_ratio: n_dead_tup / (n_live_tup + n_dead_tup) of job_queue from the
--     cumulative statistics (NULL while both are 0).
--   notification_queue_usage: pg_notification_queue_usage(), the fraction of the NOTIFY queue
--     in use (RELIABILITY #35).
-- SECURITY DEFINER because other roles' transaction start times are hidden from an ordinary
-- caller; it returns three numbers and nothing else. (Its owner, the migrating role, must be a
-- superuser or hold pg_read_all_stats to see every session.) Granted to the roles that read
-- v_queue_health, which calls it.
CREATE OR REPLACE FUNCTION conveyor.fn_queue_health__db_signals(
    OUT oldest_xmin_age_seconds    double precision,
    OUT job_queue_dead_tuple_ratio double precision,
    OUT notification_queue_usage   double precision
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
    SELECT (SELECT extract(epoch FROM clock_timestamp() - min(h.started))::double precision
              FROM (SELECT a.xact_start AS started
                      FROM pg_stat_activity AS a
                     WHERE a.datname = current_database()
                       AND a.pid <> pg_backend_pid()
                       AND (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
                    UNION ALL
                    SELECT px.prepared
                      FROM pg_prepared_xacts AS px
                     WHERE px.database = current_database()) AS h),
           -- The counters behind pg_stat_user_tables, read for the one table directly (that
           -- view aggregates over the whole catalog first).
           (SELECT t.dead::double precision / nullif(t.live + t.dead, 0)
              FROM (SELECT pg_stat_get_live_tuples('conveyor.job_queue'::regclass) AS live,
                           pg_stat_get_dead_tuples('conveyor.job_queue'::regclass) AS dead) AS t),
           pg_notification_queue_usage()
$$;
REVOKE ALL ON FUNCTION conveyor.fn_queue_health__db_signals() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_queue_health__db_signals() TO conveyor_admin, conveyor_reader;
COMMENT ON FUNCTION conveyor.fn_queue_health__db_signals() IS
    'Database-wide signals of v_queue_health: oldest_xmin_age_seconds (oldest transaction of this database holding back vacuum, prepared ones included, the caller''s own excluded), job_queue_dead_tuple_ratio, notification_queue_usage. Example: SELECT * FROM conveyor.fn_queue_health__db_signals()';
