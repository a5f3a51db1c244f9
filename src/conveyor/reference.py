"""Render the SQL reference (docs/sql-reference.md) from the database catalog itself.

Every conveyor function carries a COMMENT with its promise, answer shape and refusals; this
module lists them per phase with their signatures, so the reference can never drift from `\\df+`.
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg

from conveyor.phases import catalog

_OBJECTS: LiteralString = """
WITH fn AS (
    SELECT p.oid, n.nspname || '.' || p.proname
                  || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS object_name
      FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname IN ('conveyor', 'iu_core')
)
SELECT po.phase, po.object_kind, po.object_name, p.prosecdef,
       pg_get_function_result(p.oid), pg_get_function_arguments(p.oid),
       CASE WHEN po.object_kind = 'function' THEN obj_description(p.oid, 'pg_proc')
            ELSE obj_description(to_regclass(po.object_name), 'pg_class') END
  FROM conveyor_meta.phase_object AS po
  LEFT JOIN fn ON po.object_kind = 'function' AND fn.object_name = po.object_name
  LEFT JOIN pg_proc AS p ON p.oid = fn.oid
 WHERE po.object_kind IN ('function', 'table', 'view')
 ORDER BY po.phase, array_position(ARRAY['table', 'view', 'function'], po.object_kind),
          po.object_name
"""

HEADER = """# SQL reference

Generated from the database catalog by `python scripts/sql_reference.py` (every object's
`COMMENT`, which `\\df+` and `\\d+` show too). Functions live in schema `conveyor` (staging
operations in `iu_core`); call them with named arguments, e.g.
`SELECT conveyor.fn_job_enqueue(kind => 'email.send', payload => '{"to": 42}');`.
Answers are jsonb: `{"ok": true, …}` or a refusal `{"refused": true, "reason": …}` that changed
nothing. Bad input raises SQLSTATE 22023 with a message naming the argument and a HINT.
Functions whose name has a double underscore (`fn_job__…`) are private helpers.
"""


def render(conn: psycopg.Connection[Any]) -> str:
    """The reference for every object the applied phases installed."""
    lines = [HEADER]
    current: tuple[int, str] | None = None
    for phase, kind, name, definer, result, arguments, comment in conn.execute(_OBJECTS):
        if current is None or current[0] != phase:
            lines.append(f"\n## Phase {phase}: {catalog.get(int(phase)).title}\n")
        if current != (phase, kind):
            lines.append(f"\n### {kind.capitalize()}s\n")
            current = (phase, kind)
        text = " ".join((comment or "(no comment)").split())
        if kind == "function" and arguments is None:
            continue  # replaced by a later phase's version (listed there)
        if kind == "function":
            short = name.split("(")[0]
            security = "SECURITY DEFINER" if definer else "SECURITY INVOKER"
            signature = f"{short}({arguments}) RETURNS {result}"
            lines.append(f"\n#### `{short}`\n\n```sql\n{signature}\n```\n")
            lines.append(f"{security}. {text}\n")
        else:
            lines.append(f"- `{name}`: {text}")
    return "\n".join(lines).rstrip() + "\n"
