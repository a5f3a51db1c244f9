"""Render the SQL reference (docs/sql-reference.md) from the database catalog itself.

Every conveyor function carries a COMMENT with its promise, answer shape and refusals; this
module lists them per phase with their signatures, so the reference can never drift from `\\df+`.
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg

from conveyor.phases import catalog

_OBJECTS: LiteralString = """
SELECT po.phase, po.object_kind, po.object_name,
       CASE po.object_kind
            WHEN 'function' THEN (SELECT p.prosecdef FROM pg_proc AS p
                                   WHERE p.oid = to_regprocedure(po.object_name))
       END AS security_definer,
       CASE po.object_kind
            WHEN 'function' THEN pg_get_function_result(to_regprocedure(po.object_name))
       END AS result,
       CASE po.object_kind
            WHEN 'function' THEN (SELECT pg_get_function_arguments(p.oid) FROM pg_proc AS p
                                   WHERE p.oid = to_regprocedure(po.object_name))
       END AS arguments,
       CASE po.object_kind
            WHEN 'function' THEN obj_description(to_regprocedure(po.object_name), 'pg_proc')
            WHEN 'table' THEN obj_description(to_regclass(po.object_name), 'pg_class')
            WHEN 'view' THEN obj_description(to_regclass(po.object_name), 'pg_class')
       END AS comment
  FROM conveyor_meta.phase_object AS po
 WHERE po.object_kind IN ('function', 'table', 'view')
 ORDER BY po.phase, po.object_kind DESC, po.object_name
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
        if kind == "function":
            short = name.split("(")[0]
            security = "SECURITY DEFINER" if definer else "SECURITY INVOKER"
            signature = f"{short}({arguments}) RETURNS {result}"
            lines.append(f"\n#### `{short}`\n\n```sql\n{signature}\n```\n")
            lines.append(f"{security}. {text}\n")
        else:
            lines.append(f"- `{name}`: {text}")
    return "\n".join(lines).rstrip() + "\n"
