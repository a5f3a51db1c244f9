#!/usr/bin/env python3
"""Regenerate docs/sql-reference.md: apply every implemented phase to a scratch database on the
server of CONVEYOR_DATABASE_URL (default: the embedded one), render the catalog, drop it."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor import db
from conveyor.phases import catalog, runner
from conveyor.reference import render


def main() -> int:
    admin = db.resolve_url()
    name = f"conveyor_reference_{uuid.uuid4().hex[:8]}"
    params = {k: str(v) for k, v in conninfo_to_dict(admin).items() if v is not None}
    params["dbname"] = name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(make_conninfo("", **params), autocommit=True) as conn:
            for phase in catalog.PHASES:
                if phase.implemented:
                    runner.ratify(conn, phase.number, "sql_reference")
                    runner.apply(conn, phase.number, "sql_reference")
            text = render(conn)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    target = Path(__file__).resolve().parent.parent / "docs" / "sql-reference.md"
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
