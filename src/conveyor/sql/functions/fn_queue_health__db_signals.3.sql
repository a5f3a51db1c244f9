-- fn_queue_health__db_signals: the database-wide signals v_queue_health shows on every row, in
-- absolute terms, and one verdict on them (database_hint) against thresholds in dot_config.
--   oldest_xmin_age_seconds: age of the oldest transaction in this database that holds back
--     vacuum (a backend with an xmin or an xid, other than the caller's own and autovacuum's,
--     or a prepared transaction): the long transaction that bloats job_queue (RELIABILITY #29). NULL: none.
--   oldest_xmin_age_xids: the same horizon in transactions, replication slots included (a slot
--     has no start time): how many transactions' dead rows vacuum may not remove. NULL: none.
--   job_queue_dead_tuples / job_queue_live_tuples: job_queue's row versions from the cumulative
--     statistics. A ratio of the two is near 1 whenever finished jobs are pruned (few live rows),
--     so it cannot tell a pinned horizon from churn; the count can: autovacuum runs on job_queue
--     after 1,000 dead rows (its storage options), so a count far above that means vacuum is
--     not running or cannot remove them.
--   autovacuum_off_tables: the queue tables autovacuum will not visit (the server's autovacuum
--     or track_counts is off, or the table's autovacuum_enabled is false). Empty: all visited.
--   notification_queue_usage: pg_notification_queue_usage(), the fraction of the NOTIFY queue
--     in use (RELIABILITY #35).
--   database_hint: 'ok', or the problems found, comma-separated: autovacuum_off, xmin_pinned
--     (older than queue.health.xmin_age_warn_seconds, or more than
--     queue.health.xmin_age_warn_xids transactions behind), dead_tuples_high (more than
--     queue.health.dead_tuples_warn), notify_queue_filling (more than half full).
-- SECURITY DEFINER because other roles' transaction start times are hidden from an ordinary
-- caller; it returns these figures and nothing else. (Its owner, conveyor_admin, holds
-- pg_read_all_stats to see every session: phase 0.) Granted to the roles that read v_queue_health,
-- which calls it.
CREATE OR REPLACE FUNCTION conveyor.fn_queue_health__db_signals(
    OUT oldest_xmin_age_seconds    double precision,
    OUT oldest_xmin_age_xids       bigint,
    OUT job_queue_dead_tuples      bigint,
    OUT job_queue_live_tuples      bigint,
    OUT autovacuum_off_tables      text[],
    OUT notification_queue_usage   double precision,
    OUT database_hint              text
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
    WITH holders AS (
        SELECT a.xact_start AS started, greatest(age(a.backend_xmin), age(a.backend_xid)) AS xids
          FROM pg_stat_activity AS a
         WHERE a.datname = current_database()
           AND a.pid <> pg_backend_pid()
           AND a.backend_type NOT IN ('autovacuum worker', 'autovacuum launcher')
           AND (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
        UNION ALL
        SELECT px.prepared, age(px.transaction)
          FROM pg_prepared_xacts AS px
         WHERE px.database = current_database()
        UNION ALL
        SELECT NULL, greatest(age(rs.xmin), age(rs.catalog_xmin))
          FROM pg_replication_slots AS rs
         WHERE (rs.database IS NULL OR rs.database = current_database())
           AND (rs.xmin IS NOT NULL OR rs.catalog_xmin IS NOT NULL)
    ), figures AS (
        SELECT (SELECT extract(epoch FROM clock_timestamp() - min(h.started))::double precision
                  FROM holders AS h) AS xmin_seconds,
               (SELECT max(h.xids)::bigint FROM holders AS h) AS xmin_xids,
               -- The counters behind pg_stat_user_tables, read for the one table directly (that
               -- view aggregates over the whole catalog first).
               pg_stat_get_dead_tuples('conveyor.job_queue'::regclass) AS dead,
               pg_stat_get_live_tuples('conveyor.job_queue'::regclass) AS live,
               ARRAY(SELECT c.relname::text
                       FROM pg_class AS c
                      WHERE c.oid IN ('conveyor.job_queue'::regclass,
                                      'conveyor.job_dead_letter'::regclass,
                                      'conveyor.queue_heartbeat'::regclass,
                                      'conveyor.event_outbox'::regclass)
                        AND (NOT current_setting('autovacuum')::boolean
                             OR NOT current_setting('track_counts')::boolean
                             OR coalesce(c.reloptions @> ARRAY['autovacuum_enabled=false']
                                         OR c.reloptions @> ARRAY['autovacuum_enabled=off'], false))
                      ORDER BY c.relname) AS autovacuum_off,
               pg_notification_queue_usage() AS notify_usage
    ), thresholds AS (
        SELECT max(CASE WHEN dc.key = 'queue.health.xmin_age_warn_seconds' THEN dc.number END)
                   AS xmin_seconds,
               max(CASE WHEN dc.key = 'queue.health.xmin_age_warn_xids' THEN dc.number END)
                   AS xmin_xids,
               max(CASE WHEN dc.key = 'queue.health.dead_tuples_warn' THEN dc.number END) AS dead
          FROM (SELECT d.key, CASE WHEN jsonb_typeof(d.value) = 'number' THEN d.value::numeric END
                       AS number
                  FROM dot_config AS d
                 WHERE d.key LIKE 'queue.health.%') AS dc
    )
    SELECT f.xmin_seconds, f.xmin_xids, f.dead, f.live, f.autovacuum_off, f.notify_usage,
           coalesce(nullif(concat_ws(',',
               CASE WHEN cardinality(f.autovacuum_off) > 0 THEN 'autovacuum_off' END,
               CASE WHEN f.xmin_seconds > coalesce(t.xmin_seconds, 60)
                      OR f.xmin_xids > coalesce(t.xmin_xids, 10000000) THEN 'xmin_pinned' END,
               CASE WHEN f.dead > coalesce(t.dead, 100000) THEN 'dead_tuples_high' END,
               CASE WHEN f.notify_usage > 0.5 THEN 'notify_queue_filling' END), ''), 'ok')
      FROM figures AS f
     CROSS JOIN thresholds AS t
$$;
REVOKE ALL ON FUNCTION conveyor.fn_queue_health__db_signals() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_queue_health__db_signals() TO conveyor_admin, conveyor_reader;
COMMENT ON FUNCTION conveyor.fn_queue_health__db_signals() IS
    'Database-wide signals of v_queue_health, in absolute terms: oldest_xmin_age_seconds and oldest_xmin_age_xids (the oldest transaction, prepared transaction or replication slot of this database holding back vacuum; the caller''s own excluded), job_queue_dead_tuples and job_queue_live_tuples, autovacuum_off_tables (queue tables autovacuum will not visit), notification_queue_usage, and database_hint: ok, or autovacuum_off / xmin_pinned / dead_tuples_high / notify_queue_filling against queue.health.* thresholds. Example: SELECT * FROM conveyor.fn_queue_health__db_signals()';
