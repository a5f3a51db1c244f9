"""Catalog fingerprints: what a phase installed, and whether protected objects changed (§12)."""

from __future__ import annotations

import hashlib
from typing import Any, LiteralString

import psycopg

SCHEMAS = ("conveyor", "iu_core")

# (kind, name, definition) for every object in the given schemas. Definitions are what a
# rollback must restore exactly: columns, constraints, indexes, function bodies, view text,
# triggers, comments, privileges and storage options.
_OBJECTS: LiteralString = """
WITH ns AS (
    SELECT n.oid, n.nspname FROM pg_namespace AS n WHERE n.nspname = ANY(%(schemas)s)
)
SELECT 'schema', ns.nspname::text,
       concat_ws(' ', pg_get_userbyid(n.nspowner), n.nspacl::text,
                 obj_description(ns.oid, 'pg_namespace'))
  FROM ns JOIN pg_namespace AS n ON n.oid = ns.oid
UNION ALL
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'view' WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index'
                      WHEN 'I' THEN 'index' WHEN 'c' THEN 'type' ELSE c.relkind::text END,
       ns.nspname || '.' || c.relname,
       concat_ws(E'\n',
           c.relkind::text, c.relpersistence::text, c.reloptions::text, c.relacl::text,
           obj_description(c.oid, 'pg_class'),
           CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
           CASE WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid) END,
           (SELECT string_agg(concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                                        a.attnotnull, a.attidentity, a.attgenerated,
                                        pg_get_expr(d.adbin, d.adrelid),
                                        col_description(c.oid, a.attnum), a.attacl::text),
                              E'\n' ORDER BY a.attnum)
              FROM pg_attribute AS a
              LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
           (SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid), E'\n'
                              ORDER BY co.conname)
              FROM pg_constraint AS co WHERE co.conrelid = c.oid),
           (SELECT string_agg(pg_get_triggerdef(t.oid), E'\n' ORDER BY t.tgname)
              FROM pg_trigger AS t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal))
  FROM pg_class AS c JOIN ns ON ns.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I', 'c')
UNION ALL
SELECT 'function',
       ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       concat_ws(E'\n', pg_get_functiondef(p.oid), p.proacl::text,
                 obj_description(p.oid, 'pg_proc'))
  FROM pg_proc AS p JOIN ns ON ns.oid = p.pronamespace
 WHERE p.prokind IN ('f', 'p', 'w')
UNION ALL
SELECT 'type', ns.nspname || '.' || t.typname,
       concat_ws(E'\n', t.typtype::text, format_type(t.oid, NULL),
                 (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                    FROM pg_enum AS e WHERE e.enumtypid = t.oid),
                 pg_get_constraintdef((SELECT co.oid FROM pg_constraint AS co
                                        WHERE co.contypid = t.oid LIMIT 1)))
  FROM pg_type AS t JOIN ns ON ns.oid = t.typnamespace
 WHERE t.typtype IN ('e', 'd')
"""

# The objects §12 forbids any phase to change: event_outbox and iu_core.iu_staging_*.
_PROTECTED: LiteralString = """
SELECT c.oid::regclass::text,
       concat_ws(E'\n',
           (SELECT string_agg(concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                                        a.attnotnull, a.attidentity, a.attgenerated,
                                        pg_get_expr(d.adbin, d.adrelid)),
                              E'\n' ORDER BY a.attnum)
              FROM pg_attribute AS a
              LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
           (SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid), E'\n'
                              ORDER BY co.conname)
              FROM pg_constraint AS co WHERE co.conrelid = c.oid),
           (SELECT string_agg(pg_get_indexdef(i.indexrelid), E'\n' ORDER BY 1)
              FROM pg_index AS i WHERE i.indrelid = c.oid),
           (SELECT string_agg(pg_get_triggerdef(t.oid), E'\n' ORDER BY t.tgname)
              FROM pg_trigger AS t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
           (SELECT string_agg(r.rulename, E'\n' ORDER BY r.rulename)
              FROM pg_rewrite AS r WHERE r.ev_class = c.oid),
           c.reloptions::text)
  FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND ((n.nspname = 'conveyor' AND c.relname = 'event_outbox')
        OR (n.nspname = 'iu_core' AND c.relname LIKE 'iu\\_staging\\_%%'))
"""


def catalog_fingerprint(
    conn: psycopg.Connection[Any], schemas: tuple[str, ...] = SCHEMAS
) -> dict[tuple[str, str], str]:
    """Map (kind, name) → sha256 of the definition, for every object in *schemas*."""
    rows = conn.execute(_OBJECTS, {"schemas": list(schemas)}).fetchall()
    return {
        (kind, name): hashlib.sha256((definition or "").encode()).hexdigest()
        for kind, name, definition in rows
    }


def protected_fingerprint(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Map each protected table to a hash of its definition (columns, keys, indexes, triggers)."""
    rows = conn.execute(_PROTECTED).fetchall()
    return {
        name: hashlib.sha256((definition or "").encode()).hexdigest() for name, definition in rows
    }


def describe_difference(before: dict[Any, str], after: dict[Any, str]) -> list[str]:
    """Human-readable list of what was added, removed or changed between two fingerprints."""
    lines = [f"added {key}" for key in sorted(after.keys() - before.keys(), key=str)]
    lines += [f"removed {key}" for key in sorted(before.keys() - after.keys(), key=str)]
    lines += [
        f"changed {key}"
        for key in sorted(before.keys() & after.keys(), key=str)
        if before[key] != after[key]
    ]
    return lines
