-- Ownership: every function and view in the conveyor and iu_core schemas belongs to the NOLOGIN
-- role conveyor_admin, not to whoever migrated (usually a superuser). A SECURITY DEFINER
-- function runs with its owner's rights and a view reads its tables with its owner's, so this
-- keeps every call and every view read inside what conveyor_admin was granted: nothing conveyor
-- runs depends on a superuser. Included at the end of every phase's ddl.up.sql and ddl.down.sql
-- (a down file may recreate a function), so each object it finds is one that file created.
-- The migrating role must be a superuser or a member of conveyor_admin.
DO $$
DECLARE
    v_object record;
BEGIN
    FOR v_object IN
        SELECT 'FUNCTION' AS kind, p.oid::regprocedure::text AS name
          FROM pg_catalog.pg_proc AS p
          JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('conveyor', 'iu_core')
           AND p.proowner <> 'conveyor_admin'::regrole
        UNION ALL
        SELECT CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
               c.oid::regclass::text
          FROM pg_catalog.pg_class AS c
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('conveyor', 'iu_core')
           AND c.relkind IN ('v', 'm')
           AND c.relowner <> 'conveyor_admin'::regrole
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO conveyor_admin', v_object.kind, v_object.name);
    END LOOP;
END;
$$;
