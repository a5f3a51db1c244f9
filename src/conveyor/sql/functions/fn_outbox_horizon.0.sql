-- fn_outbox_horizon: the read horizon of the outbox. An event is final, and safe to hand to a
-- consumer, once its txid is below this value; every event that becomes visible later will
-- have a txid at or above it, so a cursor that stays below it never skips a late commit.
--
-- It is pg_snapshot_xmin(pg_current_snapshot()) (the oldest transaction still running), except
-- that transactions running in *other databases* of the cluster are left out: they cannot
-- write this database's outbox, and a long or idle-in-transaction session elsewhere on a
-- shared server must not stall delivery here. A running xid is left out only when a backend
-- connected to another database is seen holding it (a backend never changes database), so a
-- stale or missing observation only makes the horizon lower, never unsafe. Prepared
-- transactions have no backend and always count. The reading transaction's own xid counts too.
-- The horizon can step back for a moment (a transaction of another database that ends between
-- the statement's snapshot and the look at the backends counts, conservatively); a read then
-- returns a little less, which is harmless, and fn_outbox_advance does not rely on it.
CREATE OR REPLACE FUNCTION conveyor.fn_outbox_horizon()
RETURNS xid8
LANGUAGE sql
STABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
    WITH snap AS (
        SELECT pg_current_snapshot() AS s
    ), elsewhere AS (
        -- top-level xids held by backends of other databases, as 32-bit xids
        SELECT a.backend_xid::text::bigint AS xid32
          FROM pg_stat_get_activity(NULL::integer) AS a
         WHERE a.backend_xid IS NOT NULL
           AND a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database AS d
                                          WHERE d.datname = current_database())
    )
    SELECT LEAST(pg_snapshot_xmax(snap.s),
                 pg_current_xact_id_if_assigned(),
                 (SELECT min(x.xid)
                    FROM pg_snapshot_xip(snap.s) AS x(xid)
                   WHERE (x.xid::text::numeric % 4294967296)::bigint
                         NOT IN (SELECT e.xid32 FROM elsewhere AS e)))
      FROM snap
$$;
REVOKE ALL ON FUNCTION conveyor.fn_outbox_horizon() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_outbox_horizon()
    TO conveyor_admin, conveyor_worker, conveyor_reader;
COMMENT ON FUNCTION conveyor.fn_outbox_horizon() IS
    'Outbox read horizon: events with txid below it are final. The oldest running transaction of this database (transactions of other databases cannot write here and do not hold delivery back). Example: SELECT conveyor.fn_outbox_horizon()';
