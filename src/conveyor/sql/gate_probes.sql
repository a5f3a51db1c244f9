-- What every phase's gate.sql shares, included right after its BEGIN (`\ir ../../gate_probes.sql`):
-- the result table the runner reads, the table one check hands values to the next through, and
-- the probes several gates share. All are temporary and created inside the gate's transaction,
-- which is rolled back: a gate leaves nothing behind, and no phase owns these objects.

CREATE TEMP TABLE gate_result (
    seq    serial,
    item   text    NOT NULL,
    passed boolean NOT NULL,
    detail text    NOT NULL DEFAULT ''
) ON COMMIT DROP;

CREATE TEMP TABLE gate_state (key text PRIMARY KEY, value bigint) ON COMMIT DROP;

-- The probes answer one (item, passed, detail) row for the gate to insert:
--   INSERT INTO pg_temp.gate_result (item, passed, detail) SELECT * FROM pg_temp.fn_gate__…(…);

-- Every name exists. A name with "(" is a function signature (to_regprocedure), any
-- other a table, index, view or sequence (to_regclass); *triggers* are trigger names. A missing
-- object fails this row, never the file.
CREATE FUNCTION pg_temp.fn_gate__objects(label text, names text[], triggers text[] DEFAULT '{}')
RETURNS TABLE (item text, passed boolean, detail text)
LANGUAGE sql STABLE AS $$
    SELECT fn_gate__objects.label,
           count(*) FILTER (WHERE NOT o.present) = 0,
           COALESCE('missing: ' || string_agg(o.name, ', ') FILTER (WHERE NOT o.present),
                    count(*) FILTER (WHERE NOT o.is_trigger) || ' objects'
                    || CASE WHEN cardinality(fn_gate__objects.triggers) > 0
                            THEN ' and ' || cardinality(fn_gate__objects.triggers) || ' triggers'
                            ELSE '' END
                    || ' present')
      FROM (SELECT x.name, false AS is_trigger,
                   COALESCE(CASE WHEN x.name LIKE '%(%' THEN to_regprocedure(x.name) IS NOT NULL
                                 ELSE to_regclass(x.name) IS NOT NULL END, false) AS present
              FROM unnest(fn_gate__objects.names) AS x(name)
            UNION ALL
            SELECT t.name, true,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS tg WHERE tg.tgname = t.name)
              FROM unnest(fn_gate__objects.triggers) AS t(name)) AS o;
$$;

-- No conveyor function whose name matches one of *name_patterns* (LIKE) is executable
-- by PUBLIC, every SECURITY DEFINER one among them pins search_path, and *grants_hold* (the
-- phase's own has_*_privilege checks, evaluated by the caller) is true.
CREATE FUNCTION pg_temp.fn_gate__privileges(label text, name_patterns text[], grants_hold boolean)
RETURNS TABLE (item text, passed boolean, detail text)
LANGUAGE sql STABLE AS $$
    SELECT fn_gate__privileges.label,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) AS a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) = 0
           AND count(*) FILTER (WHERE p.prosecdef AND NOT EXISTS (
               SELECT 1 FROM unnest(p.proconfig) AS c(setting) WHERE c.setting LIKE 'search_path=%')) = 0
           AND fn_gate__privileges.grants_hold,
           count(*) || ' functions checked'
      FROM pg_catalog.pg_proc AS p
      JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname = 'conveyor' AND p.proname LIKE ANY (fn_gate__privileges.name_patterns);
$$;
