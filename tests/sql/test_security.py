"""Least privilege on real PostgreSQL (RELIABILITY.md §3.1, §3.2): what conveyor_worker and
conveyor_reader may and may not do, an audit of every conveyor function's grants and
search_path, temp objects that try to shadow what the SECURITY DEFINER functions use, and the
per-role guards phase 0 sets for its database.

Role tests run in the rolled-back `db` transaction under SET LOCAL ROLE, so no role is created.
The module's database gets phase 2 on top of the template's phases 0 and 1, so the operator
functions (reaper, replay, prune) exist to be denied.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from conveyor.phases import runner
from helpers import apply_phase, apply_phases, scalar, unique

Conn = psycopg.Connection[Any]

SUBSTRATE = "queue.job_substrate.enabled"
WORKER = "conveyor_worker"
READER = "conveyor_reader"
ADMIN = "conveyor_admin"
SCHEMAS = ["conveyor", "iu_core"]

# Every function phases 0-2 install (identity signatures as regprocedure prints them).
PHASE_0_2_FUNCTIONS = frozenset(
    {
        "conveyor.fn_config_get(text)",
        "conveyor.fn_config_enabled(text)",
        "conveyor.fn_config_set(text,jsonb,text,text)",
        "conveyor.fn_event_type_register(text,text)",
        "conveyor.fn_outbox_emit(text,jsonb,text)",
        "conveyor.fn_outbox_horizon()",
        "conveyor.fn_outbox_read(text,integer)",
        "conveyor.fn_outbox_advance(text,xid8,bigint)",
        "iu_core.fn_iu_op_emit(text,bigint,text,text,text)",
        "iu_core.fn_iu_op_transition(bigint,text,text,text)",
        "iu_core.fn_iu_op_mark(text,text,text,text)",
        "iu_core.fn_iu_op_approve(bigint,text)",
        "iu_core.fn_iu_op_cut(bigint,text,text)",
        "iu_core.fn_iu_op_verify_cut(bigint,text)",
        "iu_core.fn_iu_op_cleanup(bigint,text)",
        "conveyor.fn_iu_auto_instantiate_from_event(bigint)",
        "conveyor.fn_iu_auto_instantiate_run(integer)",
        "conveyor.fn_iu_outbound_tick(text,integer)",
        "conveyor.fn_job__config_number(text,numeric)",
        "conveyor.fn_job__enqueue_problem(text,jsonb,text,numeric,timestamp with time zone,"
        "text,numeric,integer,integer)",
        "conveyor.fn_job__attempt_limit(integer,jsonb,jsonb)",
        "conveyor.fn_job__max_attempts(text,integer)",
        "conveyor.fn_job__claim_validate(text,text[],text[],integer,integer)",
        "conveyor.fn_job__claim_rows(text,text[],text[],integer,integer,text[],text[])",
        "conveyor.fn_outbox__append(text,jsonb,text)",
        "conveyor.fn_job__dead_letter(bigint,uuid,text,text)",
        "conveyor.fn_job_enqueue(text,jsonb,text,integer,timestamp with time zone,text,integer)",
        "conveyor.fn_job_enqueue_many(jsonb)",
        "conveyor.fn_job_claim(text,text[],text[],integer,integer)",
        "conveyor.fn_job_complete(bigint,uuid,jsonb)",
        "conveyor.fn_job_complete_many(bigint[],uuid[])",
        "conveyor.fn_job_fail_transient(bigint,uuid,text,numeric)",
        "conveyor.fn_job_fail_permanent(bigint,uuid,text)",
        "conveyor.fn_job_extend_lease(bigint,uuid,integer)",
        "conveyor.fn_job_snooze(bigint,uuid,numeric)",
        "conveyor.fn_job_release(bigint,uuid)",
        "conveyor.fn_job_cancel(bigint,text)",
        "conveyor.fn_job_cancel_ack(bigint,uuid)",
        "conveyor.fn_job_queue_pause(text,text)",
        "conveyor.fn_job_queue_resume(text,text)",
        "conveyor.fn_job_backoff_seconds(integer,numeric,numeric,numeric)",
        "conveyor.fn_job__retry_seconds(integer)",
        "conveyor.fn_job_lease_reaper(integer)",
        "conveyor.fn_job_dead_letter_replay(bigint,text,text,integer,text)",
        "conveyor.fn_job_prune(integer)",
    }
)

# What a worker may call: the job functions, the flag reads, the staging operations its
# handlers run (phase 5) and the instantiation a dispatched job applies (phase 4).
WORKER_FUNCTIONS = frozenset(
    {
        "conveyor.fn_config_get(text)",
        "conveyor.fn_config_enabled(text)",
        "conveyor.fn_outbox_horizon()",
        "iu_core.fn_iu_op_mark(text,text,text,text)",
        "iu_core.fn_iu_op_approve(bigint,text)",
        "iu_core.fn_iu_op_cut(bigint,text,text)",
        "iu_core.fn_iu_op_verify_cut(bigint,text)",
        "iu_core.fn_iu_op_cleanup(bigint,text)",
        "conveyor.fn_iu_auto_instantiate_from_event(bigint)",
        "conveyor.fn_job_enqueue(text,jsonb,text,integer,timestamp with time zone,text,integer)",
        "conveyor.fn_job_enqueue_many(jsonb)",
        "conveyor.fn_job_claim(text,text[],text[],integer,integer)",
        "conveyor.fn_job_complete(bigint,uuid,jsonb)",
        "conveyor.fn_job_complete_many(bigint[],uuid[])",
        "conveyor.fn_job_fail_transient(bigint,uuid,text,numeric)",
        "conveyor.fn_job_fail_permanent(bigint,uuid,text)",
        "conveyor.fn_job_extend_lease(bigint,uuid,integer)",
        "conveyor.fn_job_snooze(bigint,uuid,numeric)",
        "conveyor.fn_job_release(bigint,uuid)",
        "conveyor.fn_job_cancel(bigint,text)",
        "conveyor.fn_job_cancel_ack(bigint,uuid)",
    }
)

# What a reader may call: the flag reads, and the horizon v_event_outbox_cursor_lag calls.
READER_FUNCTIONS = frozenset(
    {
        "conveyor.fn_config_get(text)",
        "conveyor.fn_config_enabled(text)",
        "conveyor.fn_outbox_horizon()",
    }
)

WORKER_GUARDS = {
    "statement_timeout": "30s",
    "lock_timeout": "5s",
    "idle_in_transaction_session_timeout": "60s",
}
READER_GUARDS = {
    "statement_timeout": "60s",
    "lock_timeout": "5s",
    "idle_in_transaction_session_timeout": "60s",
    "default_transaction_read_only": "on",
}


@pytest.fixture(scope="module", autouse=True)
def phase2(dsn: str) -> None:
    """Apply phase 2 to this module's database (phases 0 and 1 come from the template)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2,))


# --------------------------------------------------------------------------- helpers


def as_role(conn: Conn, role: str) -> None:
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))


def back_to_superuser(conn: Conn) -> None:
    conn.execute("RESET ROLE")


def denied(conn: Conn, query: Any, params: Any = None) -> str:
    """Run *query* in a savepoint; it must fail with permission denied. Returns the SQLSTATE."""
    with pytest.raises(errors.InsufficientPrivilege) as raised, conn.transaction():
        conn.execute(query, params)
    sqlstate = raised.value.sqlstate
    assert sqlstate is not None
    return sqlstate


def answer(conn: Conn, query: Any, params: Any = None) -> dict[str, Any]:
    value = scalar(conn, query, params)
    assert isinstance(value, dict), value
    return value


def ok(conn: Conn, query: Any, params: Any = None) -> dict[str, Any]:
    value = answer(conn, query, params)
    assert value.get("ok") is True, value
    return value


def function_oids(conn: Conn) -> dict[str, int]:
    """regprocedure text (no spaces) → oid, for every function in the conveyor schemas."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || p.proname"
        "       || '(' || replace(oidvectortypes(p.proargtypes), ', ', ',')"
        "       || ')', p.oid"
        "  FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = ANY (%s)",
        (SCHEMAS,),
    ).fetchall()
    return {str(signature): int(oid) for signature, oid in rows}


def executable_by(conn: Conn, role: str) -> set[str]:
    rows = conn.execute(
        "SELECT n.nspname || '.' || p.proname"
        "       || '(' || replace(oidvectortypes(p.proargtypes), ', ', ',')"
        "       || ')'"
        "  FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = ANY (%s) AND has_function_privilege(%s, p.oid, 'EXECUTE')",
        (SCHEMAS, role),
    ).fetchall()
    return {str(row[0]) for row in rows}


def conveyor_views(conn: Conn) -> list[str]:
    rows = conn.execute(
        "SELECT format('%%I.%%I', v.schemaname, v.viewname) FROM pg_views AS v"
        " WHERE v.schemaname = ANY (%s) ORDER BY 1",
        (SCHEMAS,),
    ).fetchall()
    return [str(row[0]) for row in rows]


def role_settings(conn: Conn, role: str, database: str) -> dict[str, str]:
    row = conn.execute(
        "SELECT s.setconfig FROM pg_db_role_setting AS s"
        "  JOIN pg_database AS d ON d.oid = s.setdatabase"
        "  JOIN pg_roles AS r ON r.oid = s.setrole"
        " WHERE d.datname = %s AND r.rolname = %s",
        (database, role),
    ).fetchone()
    settings = row[0] if row else []
    return dict(str(item).split("=", 1) for item in settings)


# --------------------------------------------------------------------------- the worker role

# One column per table that an UPDATE may name (an identity column would fail for another
# reason before the permission check).
TABLE_COLUMN = {
    "conveyor.job_queue": "priority",
    "conveyor.job_dead_letter": "error",
    "conveyor.dot_config": "description",
    "conveyor.event_outbox": "source",
}


@pytest.mark.parametrize("table", sorted(TABLE_COLUMN))
@pytest.mark.parametrize("statement", ["SELECT", "INSERT", "UPDATE", "DELETE"])
def test_the_worker_is_denied_every_statement_on_the_tables(
    jobs: Conn, table: str, statement: str
) -> None:
    schema, name = table.split(".")
    target = sql.Identifier(schema, name)
    column = sql.Identifier(TABLE_COLUMN[table])
    query = {
        "SELECT": sql.SQL("SELECT * FROM {} LIMIT 1").format(target),
        "INSERT": sql.SQL("INSERT INTO {} DEFAULT VALUES").format(target),
        "UPDATE": sql.SQL("UPDATE {} SET {} = {}").format(target, column, column),
        "DELETE": sql.SQL("DELETE FROM {}").format(target),
    }[statement]
    as_role(jobs, WORKER)

    assert denied(jobs, query) == "42501"


def test_the_worker_runs_a_job_end_to_end_through_the_functions(jobs: Conn) -> None:
    queue = unique("sec")
    as_role(jobs, WORKER)

    job_id = ok(jobs, "SELECT fn_job_enqueue(kind => 'sec.echo', queue => %s)", (queue,))["job_id"]
    claimed = ok(
        jobs, "SELECT fn_job_claim(worker => 'sec-worker', queues => ARRAY[%s])", (queue,)
    )["jobs"]
    assert [job["job_id"] for job in claimed] == [job_id]
    done = ok(
        jobs,
        "SELECT fn_job_complete(job_id => %s, lease_token => %s, result => %s)",
        (job_id, claimed[0]["lease_token"], Jsonb({"done": True})),
    )

    back_to_superuser(jobs)
    row = jobs.execute(
        "SELECT status, leased_by, result FROM conveyor.job_queue WHERE id = %s", (job_id,)
    ).fetchone()
    assert done["job_id"] == job_id
    assert row == ("succeeded", "sec-worker", {"done": True})


def test_the_worker_may_call_every_worker_function(jobs: Conn) -> None:
    queue = unique("sec")
    as_role(jobs, WORKER)

    many = ok(
        jobs,
        "SELECT fn_job_enqueue_many(%s)",
        (Jsonb([{"kind": "sec.step", "queue": queue, "max_attempts": 3} for _ in range(4)]),),
    )
    claimed = ok(
        jobs, "SELECT fn_job_claim(worker => 'w', queues => ARRAY[%s], batch => 4)", (queue,)
    )["jobs"]
    token = {job["job_id"]: job["lease_token"] for job in claimed}
    first, second, third, fourth = many["job_ids"]
    outcomes = {
        "complete_many": ok(
            jobs,
            "SELECT fn_job_complete_many(ARRAY[%s]::bigint[], ARRAY[%s]::uuid[])",
            (first, token[first]),
        ),
        "extend_lease": ok(
            jobs,
            "SELECT fn_job_extend_lease(job_id => %s, lease_token => %s, lease_seconds => 30)",
            (second, token[second]),
        ),
        "fail_transient": ok(
            jobs,
            "SELECT fn_job_fail_transient(%s, %s, error => 'flaky', retry_in_seconds => 0)",
            (second, token[second]),
        ),
        "fail_permanent": ok(
            jobs, "SELECT fn_job_fail_permanent(%s, %s, 'broken')", (third, token[third])
        ),
        "snooze": ok(jobs, "SELECT fn_job_snooze(%s, %s, 60)", (fourth, token[fourth])),
    }
    again = ok(jobs, "SELECT fn_job_claim(worker => 'w', queues => ARRAY[%s])", (queue,))["jobs"]
    outcomes["release"] = ok(
        jobs, "SELECT fn_job_release(%s, %s)", (second, again[0]["lease_token"])
    )
    again = ok(jobs, "SELECT fn_job_claim(worker => 'w', queues => ARRAY[%s])", (queue,))["jobs"]
    outcomes["cancel"] = ok(jobs, "SELECT fn_job_cancel(%s, 'no longer needed')", (second,))
    outcomes["cancel_ack"] = ok(
        jobs, "SELECT fn_job_cancel_ack(%s, %s)", (second, again[0]["lease_token"])
    )

    back_to_superuser(jobs)
    statuses = dict(
        jobs.execute(
            "SELECT id, status FROM conveyor.job_queue WHERE queue = %s", (queue,)
        ).fetchall()
    )
    dead = scalar(jobs, "SELECT count(*) FROM conveyor.job_dead_letter WHERE queue = %s", (queue,))
    assert outcomes["cancel"]["status"] == "cancel_requested"
    assert statuses == {first: "succeeded", second: "cancelled", fourth: "queued"}
    assert dead == 1


# Functions a worker must not run: config writes, operator and tick functions, outbox reads,
# cursor moves and emits, and the private helpers. Each call is well-formed, so only the
# missing privilege can stop it.
FORBIDDEN_TO_WORKER = [
    "SELECT conveyor.fn_config_set('queue.job_substrate.enabled', 'true')",
    "SELECT conveyor.fn_event_type_register('sec.forged_type')",
    "SELECT conveyor.fn_job_lease_reaper()",
    "SELECT conveyor.fn_job_dead_letter_replay(dead_letter_id => 1)",
    "SELECT conveyor.fn_job_prune()",
    "SELECT conveyor.fn_job_queue_pause('default')",
    "SELECT conveyor.fn_job_queue_resume('default')",
    "SELECT conveyor.fn_job_backoff_seconds(1, 1, 60, 0)",
    "SELECT conveyor.fn_outbox_emit('staging.record_approved', '{\"record_id\": 1}')",
    "SELECT * FROM conveyor.fn_outbox_read('outbound.iu_outbound_default')",
    "SELECT conveyor.fn_outbox_advance('outbound.iu_outbound_default', '3', 1)",
    "SELECT conveyor.fn_iu_outbound_tick()",
    "SELECT conveyor.fn_iu_auto_instantiate_run()",
    "SELECT conveyor.fn_job__config_number('queue.payload.max_bytes', 1)",
    "SELECT conveyor.fn_job__max_attempts('k', NULL)",
    "SELECT conveyor.fn_job__dead_letter(1, gen_random_uuid(), 'permanent_failure', NULL)",
    "SELECT conveyor.fn_job__retry_seconds(1)",
    "SELECT conveyor.fn_job__attempt_limit(NULL, NULL, NULL)",
    "SELECT conveyor.fn_job__claim_validate('w', ARRAY['default'], NULL, 1, NULL)",
    "SELECT conveyor.fn_job__claim_rows('w', ARRAY['default'], NULL, 1, 60, NULL, NULL)",
    "SELECT conveyor.fn_outbox__append('staging.record_marked', '{}', NULL)",
    "SELECT iu_core.fn_iu_op_emit('mark', 1, 'c', 'k', 'a')",
    "SELECT iu_core.fn_iu_op_transition(1, 'a', 'approve')",
]


@pytest.mark.parametrize("call", FORBIDDEN_TO_WORKER)
def test_the_worker_is_denied_config_operator_outbox_and_private_functions(
    jobs: Conn, call: str
) -> None:
    as_role(jobs, WORKER)

    assert denied(jobs, call) == "42501"


def test_a_worker_cannot_enable_its_own_phase(db: Conn) -> None:
    as_role(db, WORKER)
    attempts = [
        "SELECT conveyor.fn_config_set('queue.job_substrate.enabled', 'true')",
        "UPDATE conveyor.dot_config SET value = 'true' WHERE key = 'queue.job_substrate.enabled'",
        "INSERT INTO conveyor.dot_config (key, value)"
        " VALUES ('queue.lease_reaper.enabled', 'true')",
        "DELETE FROM conveyor.dot_config WHERE key = 'queue.paused_queues'",
    ]
    sqlstates = [denied(db, attempt) for attempt in attempts]

    refusal = answer(db, "SELECT fn_job_enqueue(kind => 'sec.echo')")
    back_to_superuser(db)
    assert sqlstates == ["42501"] * len(attempts)
    assert refusal == {
        "refused": True,
        "reason": "job_substrate_disabled",
        "flag": "queue.job_substrate.enabled",
    }
    assert scalar(db, "SELECT fn_config_enabled(%s)", (SUBSTRATE,)) is False


# --------------------------------------------------------------------------- the reader role


def test_the_reader_reads_every_view_and_nothing_else(jobs: Conn) -> None:
    views = conveyor_views(jobs)
    as_role(jobs, READER)

    counts = {view: scalar(jobs, f"SELECT count(*) FROM {view}") for view in views}
    table_sqlstates = [
        denied(jobs, f"SELECT count(*) FROM {table}")
        for table in ["conveyor.job_queue", "conveyor.job_dead_letter", "conveyor.event_outbox"]
    ]
    call_sqlstates = [
        denied(jobs, "SELECT fn_job_enqueue(kind => 'sec.echo')"),
        denied(jobs, "SELECT fn_job_claim(worker => 'reader')"),
        denied(jobs, "SELECT fn_config_set('sec.flag.x', 'true')"),
    ]
    write_sqlstate = denied(jobs, "DELETE FROM conveyor.v_dead_letter_all")

    assert len(views) >= 7, views
    assert all(isinstance(count, int) for count in counts.values())
    assert table_sqlstates == ["42501"] * 3
    assert call_sqlstates == ["42501"] * 3
    assert write_sqlstate == "42501"


def test_views_grant_select_to_the_reader_only_and_nothing_to_the_worker(db: Conn) -> None:
    wrong = db.execute(
        "SELECT c.oid::regclass::text, r.role"
        "  FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " CROSS JOIN unnest(ARRAY['conveyor_worker', 'conveyor_reader']) AS r(role)"
        " WHERE n.nspname = ANY (%s) AND c.relkind IN ('v', 'm')"
        "   AND (has_table_privilege(r.role, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')"
        "        OR has_table_privilege(r.role, c.oid, 'SELECT') <> (r.role = 'conveyor_reader'))",
        (SCHEMAS,),
    ).fetchall()

    assert wrong == []


# --------------------------------------------------------------------------- audit


def test_no_conveyor_function_is_executable_by_public(db: Conn) -> None:
    public = db.execute(
        "SELECT p.oid::regprocedure::text"
        "  FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = ANY (%s)"
        "   AND (has_function_privilege('public', p.oid, 'EXECUTE')"
        "        OR EXISTS (SELECT 1"
        "                     FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a"
        "                    WHERE a.grantee = 0))",
        (SCHEMAS,),
    ).fetchall()

    assert len(function_oids(db)) >= len(PHASE_0_2_FUNCTIONS)
    assert public == []


def test_every_security_definer_function_pins_search_path_with_pg_temp_last(db: Conn) -> None:
    rows = db.execute(
        "SELECT p.oid::regprocedure::text,"
        "       (SELECT c.setting FROM unnest(p.proconfig) AS c(setting)"
        "         WHERE c.setting LIKE 'search\\_path=%%')"
        "  FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = ANY (%s) AND p.prosecdef",
        (SCHEMAS,),
    ).fetchall()
    unsafe = [
        (name, setting)
        for name, setting in rows
        if setting is None
        or not setting.startswith("search_path=pg_catalog,")
        or not setting.endswith(", pg_temp")
    ]

    assert len(rows) >= 25
    assert unsafe == []


def test_the_worker_may_execute_exactly_the_worker_functions_of_phases_0_to_2(db: Conn) -> None:
    installed = set(function_oids(db))

    assert installed >= PHASE_0_2_FUNCTIONS, PHASE_0_2_FUNCTIONS - installed
    assert executable_by(db, WORKER) & PHASE_0_2_FUNCTIONS == WORKER_FUNCTIONS


def test_the_reader_may_execute_only_the_config_reads_and_the_outbox_horizon(db: Conn) -> None:
    assert executable_by(db, READER) & PHASE_0_2_FUNCTIONS == READER_FUNCTIONS


def test_no_runtime_role_or_public_holds_a_privilege_on_a_table_or_sequence(db: Conn) -> None:
    held = db.execute(
        "SELECT c.oid::regclass::text, r.role"
        "  FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " CROSS JOIN unnest(ARRAY['conveyor_worker', 'conveyor_reader', 'public']) AS r(role)"
        " WHERE n.nspname = ANY (%s)"
        "   AND CASE c.relkind"
        "         WHEN 'S' THEN has_sequence_privilege(r.role, c.oid, 'USAGE, SELECT, UPDATE')"
        "         ELSE has_table_privilege(r.role, c.oid,"
        "                'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
        "       END"
        "   AND c.relkind IN ('r', 'p', 'S')",
        (SCHEMAS,),
    ).fetchall()
    admin_tables = scalar(
        db,
        "SELECT bool_and(has_table_privilege('conveyor_admin', c.oid,"
        "                                    'SELECT, INSERT, UPDATE, DELETE'))"
        "  FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = ANY (%s) AND c.relkind IN ('r', 'p')",
        (SCHEMAS,),
    )

    assert held == []
    assert admin_tables is True


def test_runtime_roles_cannot_create_objects_or_become_admin(db: Conn) -> None:
    rows = db.execute(
        "SELECT r.role, s.schema,"
        "       has_schema_privilege(r.role, s.schema, 'CREATE'),"
        "       has_schema_privilege(r.role, s.schema, 'USAGE'),"
        "       pg_has_role(r.role, 'conveyor_admin', 'MEMBER')"
        "  FROM unnest(ARRAY['conveyor_worker', 'conveyor_reader']) AS r(role)"
        " CROSS JOIN unnest(%s::text[]) AS s(schema)",
        (SCHEMAS,),
    ).fetchall()
    public_schema_grants = scalar(
        db,
        "SELECT count(*) FROM pg_namespace AS n, aclexplode(n.nspacl) AS a"
        " WHERE n.nspname = ANY (%s) AND a.grantee = 0",
        (SCHEMAS,),
    )

    assert [(role, schema, create, member) for role, schema, create, _, member in rows] == [
        (role, schema, False, False) for role in (WORKER, READER) for schema in SCHEMAS
    ]
    assert all(usage for *_, usage, _ in rows)
    assert public_schema_grants == 0


def test_a_worker_cannot_plant_objects_in_the_conveyor_schemas(db: Conn) -> None:
    as_role(db, WORKER)

    sqlstates = [
        denied(db, "CREATE TABLE conveyor.job_queue_shadow (id bigint)"),
        denied(
            db,
            "CREATE FUNCTION conveyor.fn_config_enabled(k text, x int) RETURNS boolean"
            " LANGUAGE sql AS 'SELECT true'",
        ),
        denied(db, "CREATE TABLE iu_core.iu_staging_shadow (id bigint)"),
    ]

    assert sqlstates == ["42501"] * 3


# --------------------------------------------------------------------------- shadowing


def plant_decoys(conn: Conn, decoy_queue: str) -> None:
    """As the current role: temp tables and temp functions named like what the functions use."""
    conn.execute(
        "CREATE TEMP TABLE job_queue (id bigint, queue text, kind text, payload jsonb,"
        " priority smallint, status text, run_at timestamptz, attempts integer,"
        " max_attempts integer, idempotency_key text, lease_token uuid, leased_by text,"
        " lease_expires_at timestamptz, started_at timestamptz, created_at timestamptz)"
    )
    conn.execute(
        "INSERT INTO pg_temp.job_queue (id, queue, kind, payload, priority, status, run_at,"
        " attempts, created_at)"
        " VALUES (-1, %s, 'decoy.kind', '{}', 1000, 'queued', '2000-01-01', 0, '2000-01-01')",
        (decoy_queue,),
    )
    conn.execute("CREATE TEMP TABLE dot_config (key text PRIMARY KEY, value jsonb)")
    conn.execute(
        "INSERT INTO pg_temp.dot_config VALUES"
        " ('queue.job_substrate.enabled', 'true'), ('queue.payload.max_bytes', '1')"
    )
    conn.execute(
        "CREATE FUNCTION pg_temp.fn_config_enabled(key text) RETURNS boolean"
        " LANGUAGE sql AS 'SELECT true'"
    )
    conn.execute(
        "CREATE FUNCTION pg_temp.fn_job__enqueue_problem(kind text, payload jsonb, queue text,"
        " priority numeric, run_at timestamptz, idempotency_key text, max_attempts numeric,"
        " max_bytes integer, max_depth integer) RETURNS text[]"
        " LANGUAGE sql AS $$SELECT ARRAY['decoy', 'planted by the worker', '']$$"
    )
    conn.execute(
        "CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql"
        " AS $$SELECT '2000-01-01'::timestamptz$$"
    )
    conn.execute(
        "CREATE FUNCTION pg_temp.gen_random_uuid() RETURNS uuid LANGUAGE sql"
        " AS $$SELECT '00000000-0000-0000-0000-000000000000'::uuid$$"
    )


def test_temp_objects_of_a_worker_do_not_shadow_the_tables_and_helpers_functions_use(
    jobs: Conn,
) -> None:
    queue = unique("sec")
    as_role(jobs, WORKER)
    plant_decoys(jobs, decoy_queue=queue)

    enqueued = ok(
        jobs, "SELECT fn_job_enqueue(kind => 'sec.real', queue => %s, payload => '{}')", (queue,)
    )
    claimed = ok(
        jobs, "SELECT fn_job_claim(worker => 'shadow', queues => ARRAY[%s], batch => 5)", (queue,)
    )["jobs"]

    back_to_superuser(jobs)
    real = jobs.execute(
        "SELECT id, kind, status, lease_token::text, started_at = pg_catalog.now()"
        "  FROM conveyor.job_queue WHERE queue = %s",
        (queue,),
    ).fetchall()
    decoys = jobs.execute("SELECT id, status FROM pg_temp.job_queue").fetchall()
    assert [job["job_id"] for job in claimed] == [enqueued["job_id"]]
    assert real == [
        (enqueued["job_id"], "sec.real", "in_progress", claimed[0]["lease_token"], True)
    ]
    assert claimed[0]["lease_token"] != "00000000-0000-0000-0000-000000000000"
    assert decoys == [(-1, "queued")]


def test_temp_objects_of_a_worker_cannot_switch_its_phase_on(db: Conn) -> None:
    as_role(db, WORKER)
    plant_decoys(db, decoy_queue="default")

    refusals = [
        answer(db, "SELECT fn_job_enqueue(kind => 'sec.real')"),
        answer(db, "SELECT fn_job_claim(worker => 'shadow')"),
    ]

    back_to_superuser(db)
    assert (
        refusals
        == [
            {
                "refused": True,
                "reason": "job_substrate_disabled",
                "flag": "queue.job_substrate.enabled",
            }
        ]
        * 2
    )
    assert scalar(db, "SELECT count(*) FROM conveyor.job_queue WHERE kind = 'sec.real'") == 0


# --------------------------------------------------------------------------- per-role guards


def test_phase_0_sets_the_role_guards_for_its_database_and_its_rollback_resets_them(
    empty_dsn: str, template_db: str
) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        database = scalar(conn, "SELECT current_database()")
        applied = apply_phase(conn, 0)
        after_apply = (role_settings(conn, WORKER, database), role_settings(conn, READER, database))
        runner.rollback(conn, 0, "tests")
        after_rollback = (
            role_settings(conn, WORKER, database),
            role_settings(conn, READER, database),
        )
        # The template database (phase 0 applied there too) keeps its own settings.
        template = (
            role_settings(conn, WORKER, template_db),
            role_settings(conn, READER, template_db),
        )

    assert applied.gate is not None and applied.gate.passed
    assert after_apply == (WORKER_GUARDS, READER_GUARDS)
    assert after_rollback == ({}, {})
    assert template == (WORKER_GUARDS, READER_GUARDS)
