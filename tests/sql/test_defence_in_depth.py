"""Defence in depth, left from the first security round: fn_outbox_emit caps its payload, the
runtime roles carry connection limits that leave room for everyone else, and every function is
owned by the NOLOGIN conveyor_admin, so nothing conveyor runs depends on a superuser. Plain SQL on
real PostgreSQL; the module's database gets every implemented phase."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from conveyor import tick
from conveyor.phases import catalog
from helpers import SEARCH_PATH_OPTION, apply_phases, scalar, set_flag

Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module", autouse=True)
def all_phases(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, [p.number for p in catalog.PHASES if p.implemented and p.number > 1])


# --------------------------------------------------------------------------- outbox payload cap


def emit(conn: Conn, payload: dict[str, Any]) -> Any:
    return scalar(
        conn,
        "SELECT fn_outbox_emit(event_type => 'staging.record_marked', payload => %s)",
        (Jsonb(payload),),
    )


def test_an_outbox_payload_over_the_cap_is_refused_naming_size_limit_and_setting(db: Conn) -> None:
    set_flag(db, "outbox.payload.max_bytes", 1000)
    assert emit(db, {"note": "x" * 500}) > 0

    with pytest.raises(errors.InvalidParameterValue) as raised:
        emit(db, {"note": "x" * 2000})

    assert "the limit is 1000 bytes (outbox.payload.max_bytes)" in str(raised.value)
    assert raised.value.diag.message_hint is not None


def test_the_cap_measures_a_compressible_payload_unpacked(db: Conn) -> None:
    set_flag(db, "outbox.payload.max_bytes", 262144)
    with pytest.raises(errors.InvalidParameterValue, match=r"outbox\.payload\.max_bytes"):
        emit(db, {"note": "a" * 300000})  # compresses to a few KB on disk


def test_the_outbox_cap_ships_at_256_kib(db: Conn) -> None:
    assert scalar(db, "SELECT value FROM dot_config WHERE key = 'outbox.payload.max_bytes'") == (
        262144
    )


# --------------------------------------------------------------------------- connection limits


def test_every_runtime_role_has_a_connection_limit_that_leaves_room_for_the_others(
    db: Conn,
) -> None:
    limits = dict(
        db.execute(
            "SELECT rolname, rolconnlimit FROM pg_roles"
            " WHERE rolname IN ('conveyor_admin', 'conveyor_worker', 'conveyor_reader')"
        ).fetchall()
    )
    usable = int(scalar(db, "SELECT current_setting('max_connections')::int")) - int(
        scalar(db, "SELECT current_setting('superuser_reserved_connections')::int")
    )

    assert set(limits) == {"conveyor_admin", "conveyor_worker", "conveyor_reader"}
    assert all(limit > 0 for limit in limits.values()), limits
    assert sum(limits.values()) < usable, (limits, usable)


# --------------------------------------------------------------------------- ownership


def test_every_function_and_view_is_owned_by_the_nologin_conveyor_admin(db: Conn) -> None:
    strays = db.execute(
        "SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner) FROM pg_proc AS p"
        " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('conveyor', 'iu_core') AND p.proowner <> 'conveyor_admin'::regrole"
        " UNION ALL"
        " SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner) FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('conveyor', 'iu_core') AND c.relkind IN ('v', 'm')"
        "   AND c.relowner <> 'conveyor_admin'::regrole"
    ).fetchall()
    admin = db.execute(
        "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'conveyor_admin'"
    ).fetchone()

    assert strays == []
    assert admin == (False, False)


@pytest.fixture
def login_as(dsn: str) -> Any:
    """Connect as a fresh non-superuser LOGIN role that is a member of *role* (dropped after)."""
    made: list[str] = []
    opened: list[Conn] = []

    def connect(role: str) -> Conn:
        name = f"t_{role}_{uuid.uuid4().hex[:8]}"
        secret = uuid.uuid4().hex
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(name), sql.Literal(secret), sql.Identifier(role)
                )
            )
        made.append(name)
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
        params.update(user=name, password=secret)
        conn = psycopg.connect(
            make_conninfo("", **params), autocommit=True, options=SEARCH_PATH_OPTION
        )
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()
    with psycopg.connect(dsn, autocommit=True) as admin:
        for name in made:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_nothing_conveyor_runs_needs_a_superuser(dsn: str, login_as: Any) -> None:
    """A worker login and an admin login, neither superuser, run a job and every tick step."""
    with psycopg.connect(dsn, autocommit=True, options=SEARCH_PATH_OPTION) as setup:
        for flag in ("queue.job_substrate.enabled", "queue.lease_reaper.enabled"):
            set_flag(setup, flag, True)
    worker, admin = login_as("conveyor_worker"), login_as("conveyor_admin")
    queue = f"q{uuid.uuid4().hex[:8]}"

    job_id = scalar(
        worker,
        "SELECT fn_job_enqueue(kind => 'test.nosuper', payload => '{}', queue => %s)",
        (queue,),
    )["job_id"]
    claimed = scalar(
        worker, "SELECT fn_job_claim(worker => 'w-nosuper', queues => ARRAY[%s])", (queue,)
    )["jobs"][0]
    done = scalar(
        worker,
        "SELECT fn_job_complete(job_id => %s, lease_token => %s)",
        (job_id, claimed["lease_token"]),
    )
    assert done.get("ok"), done
    for step in tick.STEPS:
        admin.execute(step.sql)
    holder = login_as("conveyor_reader")
    holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT 1")  # another role's snapshot: visible to the health signals
    seen = scalar(admin, "SELECT oldest_xmin_age_seconds FROM fn_queue_health__db_signals()")
    holder.execute("ROLLBACK")

    assert seen is not None
    assert scalar(admin, "SELECT status FROM job_queue WHERE id = %s", (job_id,)) == "succeeded"
