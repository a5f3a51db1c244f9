"""Least privilege of phase 8 (the lists of tests/sql/test_security.py, for the phase that module
does not apply): which of its functions a worker may call, none for PUBLIC, private helpers
without grants, SECURITY DEFINER functions pinning search_path, v_job_limits readable."""

from __future__ import annotations

from typing import Any

import psycopg

from helpers import scalar

Conn = psycopg.Connection[Any]

PHASE_8_FUNCTIONS = frozenset(
    {
        "conveyor.fn_job_queue_limit(text,integer,integer,numeric)",
        "conveyor.fn_job_key_limit(text,text,integer,integer,numeric)",
        "conveyor.fn_job__claim_limited(text,text[],integer,text[],text[])",
        "conveyor.fn_job__limit_tokens(numeric,timestamp with time zone,integer,numeric,"
        "timestamp with time zone)",
        "conveyor.fn_job__limit_burst(integer,numeric)",
        "conveyor.fn_job__claim_keys(text,text[],text[],text[],text,integer,integer,boolean,"
        "timestamp with time zone)",
        "conveyor.fn_job__limit_keys(text,text,integer)",
        "conveyor.fn_job__limit_check(text,integer,integer,numeric)",
        "conveyor.fn_job__limit_target(text,text,boolean,text)",
        "conveyor.fn_job__claim_rows(text,text[],text[],integer,integer,text[],text[])",
        "conveyor.fn_job_enqueue(text,jsonb,text,integer,timestamp with time zone,text,integer,"
        "text)",
    }
)
PHASE_8_WORKER_FUNCTIONS = frozenset(
    {
        "conveyor.fn_job_enqueue(text,jsonb,text,integer,timestamp with time zone,text,integer,"
        "text)",
    }
)
PHASE_8_ADMIN_ONLY = frozenset(
    {
        "conveyor.fn_job_queue_limit(text,integer,integer,numeric)",
        "conveyor.fn_job_key_limit(text,text,integer,integer,numeric)",
    }
)

_FUNCTIONS = """
    SELECT n.nspname || '.' || p.proname || '(' || replace(oidvectortypes(p.proargtypes), ', ', ',')
           || ')' AS signature, p.oid, p.prosecdef, p.proconfig
      FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname = 'conveyor'
"""


def functions(sql: Conn) -> dict[str, tuple[int, bool, list[str] | None]]:
    rows = sql.execute(_FUNCTIONS).fetchall()
    return {
        str(r[0]): (int(r[1]), bool(r[2]), r[3]) for r in rows if str(r[0]) in PHASE_8_FUNCTIONS
    }


def test_phase_8_installs_exactly_the_listed_functions(sql: Conn) -> None:
    assert set(functions(sql)) == PHASE_8_FUNCTIONS


def test_a_worker_may_execute_only_the_enqueue_of_phase_8(sql: Conn) -> None:
    executable = {
        name
        for name, (oid, _, _) in functions(sql).items()
        if scalar(sql, "SELECT has_function_privilege('conveyor_worker', %s, 'EXECUTE')", (oid,))
    }
    assert executable == PHASE_8_WORKER_FUNCTIONS


def test_no_phase_8_function_is_executable_by_public_and_admin_sets_limits(sql: Conn) -> None:
    for name, (oid, _, _) in functions(sql).items():
        acl = scalar(sql, "SELECT proacl::text FROM pg_proc WHERE oid = %s", (oid,))
        assert acl is not None, name  # NULL = the default, EXECUTE for PUBLIC
        assert not acl.startswith("{=X") and ",=X/" not in acl, (name, acl)
    for name in PHASE_8_ADMIN_ONLY:
        oid = functions(sql)[name][0]
        assert scalar(sql, "SELECT has_function_privilege('conveyor_admin', %s, 'EXECUTE')", (oid,))


def test_security_definer_functions_of_phase_8_pin_search_path_with_pg_temp_last(
    sql: Conn,
) -> None:
    for name, (_, definer, config) in functions(sql).items():
        if definer:
            setting = next(c for c in config or [] if c.startswith("search_path="))
            assert setting.endswith("pg_temp"), (name, setting)


def test_the_reader_reads_v_job_limits(sql: Conn) -> None:
    assert scalar(
        sql, "SELECT has_table_privilege('conveyor_reader', 'conveyor.v_job_limits', 'SELECT')"
    )
