"""Generated arguments against every public function of phases 0-2 (RELIABILITY.md §1 J #47,
§3.3): whatever comes in, the answer is a clean jsonb answer (ok or refused) or a clean error
with a SQLSTATE of class 22, 23, 42 or P0; never an internal error, never a write left behind
by a refusal or an error, never a payload body in an error message or a view.

Plain SQL on real PostgreSQL, as the superuser (the function logic is what is fuzzed; the
privileges are tests/sql/test_security.py's). Each example runs in a savepoint of the `db`
transaction that is rolled back afterwards, with the substrate, the lease reaper and the
backoff switched on, and with a small world (queued, running, expired, cancel-requested and
finished jobs, a dead letter, a staging record, outbox events) that generated ids can hit.
The module's database gets phase 2 on top of the template's phases 0 and 1.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from helpers import apply_phases, scalar, set_flag

Conn = psycopg.Connection[Any]
Arguments = st.SearchStrategy[dict[str, Any]]

SENTINEL = "sentinel-7f3c1a9e-payload-body"
MAX_BYTES = 262144
MAX_DEPTH = 32
KIND_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"

# SQLSTATE classes a bad argument may produce: data exception, integrity constraint violation,
# syntax error or access rule violation, PL/pgSQL raise.
CLEAN_CLASSES = {"22", "23", "42", "P0"}
# Class-42 codes that mean the call or the function body is broken, not the argument.
BROKEN_CODE = {
    "42601": "syntax_error",
    "42602": "invalid_name",
    "42702": "ambiguous_column",
    "42703": "undefined_column",
    "42725": "ambiguous_function",
    "42804": "datatype_mismatch",
    "42846": "cannot_coerce",
    "42883": "undefined_function",
    "42P01": "undefined_table",
    "42P18": "indeterminate_datatype",
}

FUZZ_SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

# Tables any phase 0-2 function may write, with the column that orders their rows.
TABLES = {
    "conveyor.job_queue": "id",
    "conveyor.job_dead_letter": "id",
    "conveyor.dot_config": "key",
    "conveyor.event_type_registry": "event_type",
    "conveyor.event_outbox": "id",
    "conveyor.event_outbox_cursor": "consumer",
    "conveyor.iu_sql_event_route": "route",
    "iu_core.iu_staging_record": "id",
    "conveyor.iu_template_instance": "id",
    "conveyor.iu_outbound_worker": "name",
    "conveyor.iu_outbound_delivery": "id",
}
_DIGEST = sql.SQL(" UNION ALL ").join(
    sql.SQL(
        "SELECT {name},"
        "       count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t.{key})), '')"
        "  FROM {table} AS t"
    ).format(
        name=sql.Literal(table),
        key=sql.Identifier(key),
        table=sql.Identifier(*table.split(".")),
    )
    for table, key in TABLES.items()
)


@pytest.fixture(scope="module", autouse=True)
def phase2(dsn: str) -> None:
    """Apply phase 2 to this module's database (phases 0 and 1 come from the template)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2,))


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    queue: str
    job_ids: tuple[int, ...]
    leases: tuple[tuple[int, str], ...]  # (job_id, lease_token) of every job claimed here
    dead_letter_ids: tuple[int, ...]
    record_ids: tuple[int, ...]
    event_ids: tuple[int, ...]
    txids: tuple[str, ...]

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(token for _, token in self.leases)


def _answer(conn: Conn, query: str, params: Any = None) -> dict[str, Any]:
    value = scalar(conn, query, params)
    assert isinstance(value, dict) and value.get("ok") is True, value
    return value


@pytest.fixture
def world(db: Conn) -> World:
    """Flags on, and one of everything the functions look up, in the test's transaction."""
    set_flag(db, "queue.job_substrate.enabled", True)
    set_flag(db, "queue.lease_reaper.enabled", True)
    set_flag(db, "queue.retry.backoff_enabled", True)
    queue = f"fuzz{uuid.uuid4().hex[:8]}"
    many = _answer(
        db,
        "SELECT fn_job_enqueue_many(%s)",
        (
            Jsonb(
                [
                    {"kind": "fuzz.a", "queue": queue, "payload": {"n": n}, "max_attempts": 2}
                    for n in range(7)
                ]
                + [{"kind": "fuzz.keyed", "queue": queue, "idempotency_key": "fuzz-key"}]
            ),
        ),
    )
    claimed = _answer(
        db,
        "SELECT fn_job_claim(worker => 'fuzzer', queues => ARRAY[%s], batch => 5)",
        (queue,),
    )["jobs"]
    leases = tuple((int(job["job_id"]), str(job["lease_token"])) for job in claimed)
    (done, done_token), (dead, dead_token), (cancel, _), (expired, _), _running = leases
    _answer(db, "SELECT fn_job_complete(%s, %s)", (done, done_token))
    dead_letter = _answer(db, "SELECT fn_job_fail_permanent(%s, %s, 'fuzz')", (dead, dead_token))
    _answer(db, "SELECT fn_job_cancel(%s)", (cancel,))
    db.execute(
        "UPDATE job_queue SET lease_expires_at = now() - interval '1 minute' WHERE id = %s",
        (expired,),
    )
    record = _answer(db, "SELECT iu_core.fn_iu_op_mark('fuzz', %s, 'fuzzer')", (queue,))
    composed = scalar(
        db,
        "SELECT fn_outbox_emit('iu.template.instance_auto_composed', %s, 'fuzz')",
        (Jsonb({"template": "fuzz.t", "instance_key": queue, "params": {}}),),
    )
    # Stand in for events of long-finished transactions (as phase 0's gate does), so reads,
    # advances and ticks have something readable.
    db.execute("UPDATE event_outbox SET txid = '2' WHERE txid = pg_current_xact_id()")
    own_txid = str(scalar(db, "SELECT pg_current_xact_id()::text"))
    return World(
        queue=queue,
        job_ids=(*many["job_ids"],),
        leases=leases,
        dead_letter_ids=(dead_letter["dead_letter_id"],),
        record_ids=(record["record_id"],),
        event_ids=(composed, record["event_id"]),
        txids=("0", "1", "2", "3", own_txid),
    )


# --------------------------------------------------------------------------- strategies


def mostly(good: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value five times in six, anything else the sixth: most examples then carry one
    wild argument, which reaches the check for it and, when it passes, the paths behind."""
    return st.integers(min_value=0, max_value=5).flatmap(lambda roll: wild if roll == 5 else good)


_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
SHORT_TEXT = st.text(alphabet=_CHARS, max_size=24)
NAME_TEXT = st.text(alphabet=_CHARS, min_size=1, max_size=40).filter(lambda text: text.strip())
SPECIAL_TEXT = st.sampled_from(
    [
        "",
        " ",
        "%",
        "%s",
        "%I%L",
        "'",
        "';--",
        "a%b;c'd",
        "$1",
        "\\",
        "\u200b",
        "😀",
        "é" * 32,
        "q" * 63,
        "q" * 64,
        "k" * 128,
        "k" * 129,
        "w" * 255,
        "w" * 256,
        "e" * 2001,
        "default",
        "fuzz.a",
        "queue.job_substrate.enabled",
        "queue.paused_queues",
        "iu_outbound_default",
        "outbound.iu_outbound_default",
        "legacy.auto_instantiate",
        "staging.record_marked",
        "iu.template.instance_auto_composed",
        "approve",
    ]
)
HUGE_TEXT = st.sampled_from(["x" * 100_000, "é" * 50_000, "😀" * 25_000])
WILD_TEXT = st.one_of(st.none(), SHORT_TEXT, SPECIAL_TEXT, HUGE_TEXT)


def texts(*good: str | None) -> st.SearchStrategy[str | None]:
    """Mostly one of *good* (or any name if none given), sometimes any text or NULL."""
    return mostly(st.sampled_from(good) if good else NAME_TEXT, WILD_TEXT)


INT_EDGES = [0, 1, -1, 1000, 1001, -1000, -1001, 10_000, 10_001, 86_400, 86_401, 100_000, 100_001]
WILD_INTEGERS = st.one_of(
    st.none(),
    st.sampled_from([*INT_EDGES, 2**31 - 1, -(2**31), 2**31, 2**63]),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)


def integers(low: int, high: int, null: bool = True) -> st.SearchStrategy[int | None]:
    good: st.SearchStrategy[int | None] = st.integers(min_value=low, max_value=high)
    return mostly(st.one_of(st.none(), good) if null else good, WILD_INTEGERS)


WILD_NUMERICS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            Decimal("NaN"),
            Decimal("Infinity"),
            Decimal("-Infinity"),
            Decimal("1e-400"),
            Decimal("1e400"),
            Decimal("-0.000001"),
            Decimal("315576000.5"),
            Decimal(315576001),
        ]
    ),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12),
)


def numerics(low: int, high: int, null: bool = True) -> st.SearchStrategy[Decimal | None]:
    good: st.SearchStrategy[Decimal | None] = st.decimals(
        min_value=low, max_value=high, places=3, allow_nan=False, allow_infinity=False
    )
    return mostly(st.one_of(st.none(), good) if null else good, WILD_NUMERICS)


TIMESTAMPS = mostly(
    st.one_of(
        st.none(),
        st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2034, 1, 1), timezones=st.just(UTC)
        ).map(lambda moment: moment.isoformat()),
    ),
    st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
        st.sampled_from(
            [
                "infinity",
                "-infinity",
                "epoch",
                "now",
                "294276-12-31 23:59:59+00",
                "4713-01-01 00:00:00+00 BC",
                "not a timestamp",
                "",
            ]
        ),
    ),
)

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 0.1, 1e308]),
    st.floats(allow_nan=False, allow_infinity=False),
    SHORT_TEXT,
    SPECIAL_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(SHORT_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"secret": SENTINEL}
    for _ in range(levels):
        value = {"a": value}
    return value


# Built as text: Python's JSON encoder refuses to nest 10,000 levels; PostgreSQL's parser does not.
DEEP_10K = '{"a":' * 10_000 + '{"secret": "' + SENTINEL + '"}' + "}" * 10_000
SECRET_OBJECTS = st.dictionaries(SHORT_TEXT, JSON_VALUES, max_size=4).map(
    lambda value: {**value, "secret": SENTINEL}
)


def with_secret(value: Any) -> Any:
    """*value* carrying the sentinel where it can (objects and arrays; strings become it)."""
    if isinstance(value, dict):
        return {**value, "secret": SENTINEL}
    if isinstance(value, list):
        return [*value, SENTINEL]
    return SENTINEL if isinstance(value, str) else value


WILD_PAYLOAD_VALUES = st.one_of(
    JSON_VALUES.map(with_secret),
    st.sampled_from(
        [
            [SENTINEL],
            SENTINEL,
            nested(MAX_DEPTH),
            nested(MAX_DEPTH + 5),
            {"blob": "x" * (MAX_BYTES + 1), "secret": SENTINEL},
        ]
    ),
)
GOOD_PAYLOAD_VALUES = st.one_of(
    SECRET_OBJECTS,
    st.sampled_from([{}, nested(MAX_DEPTH - 1), {"blob": "x" * (MAX_BYTES - 100)}]),
)
PAYLOAD_VALUES = mostly(GOOD_PAYLOAD_VALUES, WILD_PAYLOAD_VALUES)
# A jsonb argument: SQL NULL, a JSON value, or JSON text (cast in SQL) nested 10,000 deep.
# Wild half the time (not one in six): the wild ones carry the sentinel into the error paths.
PAYLOADS = st.one_of(
    st.one_of(st.none(), GOOD_PAYLOAD_VALUES.map(Jsonb)),
    st.one_of(WILD_PAYLOAD_VALUES.map(Jsonb), st.just(DEEP_10K)),
)
JSONB = st.one_of(st.none(), JSON_VALUES.map(Jsonb))


def job_elements(world: World) -> st.SearchStrategy[Any]:
    """An element of fn_job_enqueue_many's array: mostly a valid job, sometimes anything."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "payload": st.one_of(st.none(), PAYLOAD_VALUES),
        "queue": mostly(st.sampled_from([None, world.queue, "default"]), JSON_VALUES),
        "priority": mostly(integers(-1000, 1000), JSON_VALUES),
        "run_at": mostly(TIMESTAMPS, JSON_VALUES),
        "idempotency_key": mostly(texts(None, "fuzz-key", "other-key"), JSON_VALUES),
        "max_attempts": mostly(integers(1, 1000), JSON_VALUES),
    }
    kind = mostly(st.sampled_from(["fuzz.a", "fuzz.b"]), st.one_of(WILD_TEXT, JSON_VALUES))
    return mostly(
        st.fixed_dictionaries({"kind": kind}, optional=fields),
        st.one_of(JSON_VALUES, st.fixed_dictionaries({"kind": kind, "bogus": JSON_LEAVES})),
    )


def jobs_arrays(world: World) -> st.SearchStrategy[Any]:
    return mostly(
        st.lists(job_elements(world), max_size=6).map(Jsonb),
        st.one_of(st.none(), JSON_VALUES.map(Jsonb)),
    )


def ids(known: tuple[int, ...], beyond_bigint: bool = True) -> st.SearchStrategy[int | None]:
    wild: list[st.SearchStrategy[Any]] = [
        st.none(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ]
    if beyond_bigint:  # not inside arrays: psycopg gives a list one element type
        wild.append(st.just(2**64))
    return mostly(st.sampled_from(known), st.one_of(wild))


def leases(world: World) -> st.SearchStrategy[tuple[int | None, str | None]]:
    """(job_id, lease_token): mostly a pair claimed in the world, sometimes a stranger."""
    stranger = st.tuples(ids(world.job_ids), st.one_of(st.none(), st.uuids().map(str)))
    return mostly(st.sampled_from(world.leases), stranger)


def with_lease(world: World, **others: st.SearchStrategy[Any]) -> Arguments:
    return st.tuples(leases(world), st.fixed_dictionaries(others)).map(
        lambda drawn: {"job_id": drawn[0][0], "lease_token": drawn[0][1], **drawn[1]}
    )


def arrays(element: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any] | None]:
    return mostly(
        st.lists(element, max_size=5),
        st.one_of(st.none(), st.lists(st.one_of(st.none(), element), max_size=5)),
    )


CONSUMERS = mostly(
    st.one_of(
        st.sampled_from(
            ["fuzz.consumer", "outbound.iu_outbound_default", "legacy.auto_instantiate"]
        ),
        st.from_regex(r"[A-Za-z0-9_.:/@+=#-]{1,200}", fullmatch=True),
    ),
    WILD_TEXT,
)
EVENT_TYPES = st.from_regex(r"[a-z][a-z0-9_]{0,8}([./][a-z0-9_]{1,8}){1,3}", fullmatch=True)
CONFIG_KEYS = st.from_regex(r"[a-z0-9_]{1,8}(\.[a-z0-9_]{1,8}){1,3}", fullmatch=True)


# --------------------------------------------------------------------------- the cases


def fields(**strategies: st.SearchStrategy[Any]) -> Arguments:
    return st.fixed_dictionaries(strategies)


@dataclass(frozen=True)
class Case:
    """One function: the call (named arguments, explicit casts), its arguments, its answer."""

    name: str
    call: str
    arguments: Callable[[World], Arguments]
    answer: str = "jsonb"  # jsonb | rows | bigint | boolean | any | numeric


CASES = [
    Case(
        "fn_config_get",
        "SELECT conveyor.fn_config_get(key => %(key)s::text)",
        lambda w: fields(key=mostly(st.sampled_from(["queue.paused_queues"]), WILD_TEXT)),
        answer="any",
    ),
    Case(
        "fn_config_enabled",
        "SELECT conveyor.fn_config_enabled(key => %(key)s::text)",
        lambda w: fields(key=mostly(st.sampled_from(["queue.job_substrate.enabled"]), WILD_TEXT)),
        answer="boolean",
    ),
    Case(
        "fn_config_set",
        "SELECT conveyor.fn_config_set(key => %(key)s::text, value => %(value)s::jsonb,"
        " updated_by => %(updated_by)s::text, description => %(description)s::text)",
        lambda w: fields(
            key=mostly(CONFIG_KEYS, WILD_TEXT),
            value=mostly(JSON_VALUES.map(Jsonb), st.none()),
            updated_by=mostly(st.none(), WILD_TEXT),
            description=mostly(st.none(), WILD_TEXT),
        ),
    ),
    Case(
        "fn_event_type_register",
        "SELECT conveyor.fn_event_type_register(event_type => %(event_type)s::text,"
        " description => %(description)s::text)",
        lambda w: fields(
            event_type=mostly(EVENT_TYPES, WILD_TEXT), description=mostly(st.none(), WILD_TEXT)
        ),
    ),
    Case(
        "fn_outbox_emit",
        "SELECT conveyor.fn_outbox_emit(event_type => %(event_type)s::text,"
        " payload => %(payload)s::jsonb, source => %(source)s::text)",
        lambda w: fields(
            event_type=texts("staging.record_marked", "iu.template.instance_auto_composed"),
            payload=PAYLOADS,
            source=mostly(st.none(), WILD_TEXT),
        ),
        answer="bigint",
    ),
    Case("fn_outbox_horizon", "SELECT conveyor.fn_outbox_horizon()", lambda w: fields(), "any"),
    Case(
        "fn_outbox_read",
        "SELECT * FROM conveyor.fn_outbox_read(consumer => %(consumer)s::text,"
        " batch => %(batch)s::integer)",
        lambda w: fields(consumer=CONSUMERS, batch=integers(1, 10_000)),
        answer="rows",
    ),
    Case(
        "fn_outbox_advance",
        "SELECT conveyor.fn_outbox_advance(consumer => %(consumer)s::text,"
        " last_txid => %(last_txid)s::xid8, last_id => %(last_id)s::bigint)",
        lambda w: fields(
            consumer=CONSUMERS,
            last_txid=mostly(
                st.sampled_from(w.txids),
                st.one_of(
                    st.none(),
                    st.sampled_from(["-1", "abc", "18446744073709551616"]),
                    st.integers(min_value=0, max_value=2**64 - 1).map(str),
                ),
            ),
            last_id=ids(w.event_ids),
        ),
    ),
    Case(
        "fn_iu_op_mark",
        "SELECT iu_core.fn_iu_op_mark(collection => %(collection)s::text,"
        " record_key => %(record_key)s::text, actor => %(actor)s::text,"
        " content_ref => %(content_ref)s::text)",
        lambda w: fields(
            collection=texts("fuzz", "other"),
            record_key=texts(w.queue, "r-1"),
            actor=texts(),
            content_ref=mostly(st.none(), WILD_TEXT),
        ),
    ),
    *(
        Case(
            f"fn_iu_op_{op}",
            f"SELECT iu_core.fn_iu_op_{op}(record_id => %(record_id)s::bigint,"
            " actor => %(actor)s::text)",
            lambda w: fields(record_id=ids(w.record_ids), actor=texts()),
        )
        for op in ("approve", "verify_cut", "cleanup")
    ),
    Case(
        "fn_iu_op_cut",
        "SELECT iu_core.fn_iu_op_cut(record_id => %(record_id)s::bigint, actor => %(actor)s::text,"
        " cut_target => %(cut_target)s::text)",
        lambda w: fields(
            record_id=ids(w.record_ids), actor=texts(), cut_target=mostly(st.none(), WILD_TEXT)
        ),
    ),
    Case(
        "fn_iu_auto_instantiate_from_event",
        "SELECT conveyor.fn_iu_auto_instantiate_from_event(event_id => %(event_id)s::bigint)",
        lambda w: fields(event_id=ids(w.event_ids)),
    ),
    Case(
        "fn_iu_auto_instantiate_run",
        "SELECT conveyor.fn_iu_auto_instantiate_run(batch => %(batch)s::integer)",
        lambda w: fields(batch=integers(1, 10_000)),
    ),
    Case(
        "fn_iu_outbound_tick",
        "SELECT conveyor.fn_iu_outbound_tick(name => %(name)s::text, batch => %(batch)s::integer)",
        lambda w: fields(name=texts(None, "iu_outbound_default"), batch=integers(1, 10_000)),
    ),
    Case(
        "fn_job_enqueue",
        "SELECT conveyor.fn_job_enqueue(kind => %(kind)s::text, payload => %(payload)s::jsonb,"
        " queue => %(queue)s::text, priority => %(priority)s::integer,"
        " run_at => %(run_at)s::timestamptz, idempotency_key => %(idempotency_key)s::text,"
        " max_attempts => %(max_attempts)s::integer)",
        lambda w: fields(
            kind=texts("fuzz.a", "email.send", "A:b/c-d_e.f", "k" * 128),
            payload=PAYLOADS,
            queue=texts(None, w.queue, "default", "q" * 63),
            priority=integers(-1000, 1000),
            run_at=TIMESTAMPS,
            idempotency_key=texts(None, "fuzz-key", "other-key", "w" * 255),
            max_attempts=integers(1, 1000),
        ),
    ),
    Case(
        "fn_job_enqueue_many",
        "SELECT conveyor.fn_job_enqueue_many(jobs => %(jobs)s::jsonb)",
        lambda w: fields(jobs=jobs_arrays(w)),
    ),
    Case(
        "fn_job_claim",
        "SELECT conveyor.fn_job_claim(worker => %(worker)s::text, queues => %(queues)s::text[],"
        " kinds => %(kinds)s::text[], batch => %(batch)s::integer,"
        " lease_seconds => %(lease_seconds)s::integer)",
        lambda w: fields(
            worker=texts("w1", "host:1234"),
            queues=mostly(
                st.sampled_from([None, [w.queue], [w.queue, "default"]]), arrays(texts())
            ),
            kinds=mostly(st.sampled_from([None, ["fuzz.a"]]), arrays(texts())),
            batch=integers(1, 1000),
            lease_seconds=integers(1, 86_400),
        ),
    ),
    Case(
        "fn_job_complete",
        "SELECT conveyor.fn_job_complete(job_id => %(job_id)s::bigint,"
        " lease_token => %(lease_token)s::uuid, result => %(result)s::jsonb)",
        lambda w: with_lease(w, result=PAYLOADS),
    ),
    Case(
        "fn_job_complete_many",
        "SELECT conveyor.fn_job_complete_many(job_ids => %(job_ids)s::bigint[],"
        " lease_tokens => %(lease_tokens)s::uuid[])",
        lambda w: mostly(
            st.lists(st.sampled_from(w.leases), max_size=5).map(
                lambda pairs: {
                    "job_ids": [job for job, _ in pairs],
                    "lease_tokens": [token for _, token in pairs],
                }
            ),
            fields(
                job_ids=arrays(ids(w.job_ids, beyond_bigint=False)),
                lease_tokens=arrays(st.one_of(st.sampled_from(w.tokens), st.uuids().map(str))),
            ),
        ),
    ),
    Case(
        "fn_job_fail_transient",
        "SELECT conveyor.fn_job_fail_transient(job_id => %(job_id)s::bigint,"
        " lease_token => %(lease_token)s::uuid, error => %(error)s::text,"
        " retry_in_seconds => %(retry_in_seconds)s::numeric)",
        lambda w: with_lease(
            w, error=mostly(NAME_TEXT, WILD_TEXT), retry_in_seconds=numerics(0, 315_576_000)
        ),
    ),
    Case(
        "fn_job_fail_permanent",
        "SELECT conveyor.fn_job_fail_permanent(job_id => %(job_id)s::bigint,"
        " lease_token => %(lease_token)s::uuid, error => %(error)s::text)",
        lambda w: with_lease(w, error=mostly(NAME_TEXT, WILD_TEXT)),
    ),
    Case(
        "fn_job_extend_lease",
        "SELECT conveyor.fn_job_extend_lease(job_id => %(job_id)s::bigint,"
        " lease_token => %(lease_token)s::uuid, lease_seconds => %(lease_seconds)s::integer)",
        lambda w: with_lease(w, lease_seconds=integers(1, 86_400)),
    ),
    Case(
        "fn_job_snooze",
        "SELECT conveyor.fn_job_snooze(job_id => %(job_id)s::bigint,"
        " lease_token => %(lease_token)s::uuid, seconds => %(seconds)s::numeric)",
        lambda w: with_lease(
            w,
            seconds=mostly(
                st.decimals(min_value=0, max_value=315_576_000, places=3), WILD_NUMERICS
            ),
        ),
    ),
    Case(
        "fn_job_release",
        "SELECT conveyor.fn_job_release(job_id => %(job_id)s::bigint,"
        " lease_token => %(lease_token)s::uuid)",
        lambda w: with_lease(w),
    ),
    Case(
        "fn_job_cancel",
        "SELECT conveyor.fn_job_cancel(job_id => %(job_id)s::bigint, reason => %(reason)s::text)",
        lambda w: fields(job_id=ids(w.job_ids), reason=mostly(st.none(), WILD_TEXT)),
    ),
    Case(
        "fn_job_cancel_ack",
        "SELECT conveyor.fn_job_cancel_ack(job_id => %(job_id)s::bigint,"
        " lease_token => %(lease_token)s::uuid)",
        lambda w: with_lease(w),
    ),
    Case(
        "fn_job_queue_pause",
        "SELECT conveyor.fn_job_queue_pause(queue => %(queue)s::text,"
        " paused_by => %(paused_by)s::text)",
        lambda w: fields(
            queue=texts(w.queue, "default", "q" * 63), paused_by=mostly(st.none(), WILD_TEXT)
        ),
    ),
    Case(
        "fn_job_queue_resume",
        "SELECT conveyor.fn_job_queue_resume(queue => %(queue)s::text,"
        " resumed_by => %(resumed_by)s::text)",
        lambda w: fields(queue=texts(w.queue, "default"), resumed_by=mostly(st.none(), WILD_TEXT)),
    ),
    Case(
        "fn_job_dead_letter_replay",
        "SELECT conveyor.fn_job_dead_letter_replay(dead_letter_id => %(dead_letter_id)s::bigint,"
        " kind => %(kind)s::text, queue => %(queue)s::text, max_rows => %(max_rows)s::integer,"
        " replayed_by => %(replayed_by)s::text)",
        lambda w: mostly(
            st.one_of(
                fields(dead_letter_id=st.sampled_from(w.dead_letter_ids), kind=st.none()),
                fields(dead_letter_id=st.none(), kind=st.sampled_from([None, "fuzz.a"])),
            ).flatmap(
                lambda picked: fields(
                    queue=st.just(w.queue) if picked["dead_letter_id"] is None else st.none(),
                    max_rows=integers(1, 10_000),
                    replayed_by=texts(None, "ops"),
                ).map(lambda rest: {**picked, **rest})
            ),
            fields(
                dead_letter_id=ids(w.dead_letter_ids),
                kind=texts(None, "fuzz.a"),
                queue=texts(None, w.queue),
                max_rows=integers(1, 10_000),
                replayed_by=texts(None, "ops"),
            ),
        ),
    ),
    Case(
        "fn_job_prune",
        "SELECT conveyor.fn_job_prune(batch => %(batch)s::integer)",
        lambda w: fields(batch=integers(1, 100_000)),
    ),
    Case(
        "fn_job_lease_reaper",
        "SELECT conveyor.fn_job_lease_reaper(batch => %(batch)s::integer)",
        lambda w: fields(batch=integers(1, 10_000)),
    ),
    Case(
        "fn_job_backoff_seconds",
        "SELECT conveyor.fn_job_backoff_seconds(attempt => %(attempt)s::integer,"
        " base => %(base)s::numeric, cap => %(cap)s::numeric, jitter => %(jitter)s::numeric)",
        lambda w: fields(
            attempt=integers(1, 100, null=False),
            base=numerics(0, 3600, null=False),
            cap=numerics(0, 86_400, null=False),
            jitter=mostly(st.decimals(min_value=0, max_value=1, places=2), WILD_NUMERICS),
        ),
        answer="numeric",
    ),
]


# --------------------------------------------------------------------------- checks


def digest(conn: Conn) -> dict[str, str]:
    """Row count and content hash of every table a phase 0-2 function may write."""
    return {str(table): str(value) for table, value in conn.execute(_DIGEST).fetchall()}


def assert_clean_error(error: psycopg.Error, call: str) -> None:
    sqlstate = error.sqlstate
    diag = error.diag
    said = " ".join(
        part or ""
        for part in (diag.message_primary, diag.message_detail, diag.message_hint, diag.context)
    )
    assert sqlstate is not None, f"{call}: not a server error: {error!r}"
    assert sqlstate[:2] in CLEAN_CLASSES, f"{call}: SQLSTATE {sqlstate}: {said[:500]}"
    assert sqlstate not in BROKEN_CODE, f"{call}: {BROKEN_CODE[sqlstate]}: {said[:500]}"
    assert SENTINEL not in said, f"{call}: the error repeats a payload body: {said[:500]}"


def assert_clean_answer(case: Case, rows: list[Any]) -> Any:
    if case.answer == "rows":
        return rows
    assert len(rows) == 1, rows
    value = rows[0][0]
    if case.answer == "jsonb":
        assert isinstance(value, dict), value
        assert (value.get("ok") is True) != (value.get("refused") is True), value
        if value.get("refused"):
            assert isinstance(value.get("reason"), str) and value["reason"], value
    elif case.answer == "boolean":
        assert isinstance(value, bool), value
    elif case.answer == "bigint":
        assert isinstance(value, int), value
    elif case.answer == "numeric":
        assert isinstance(value, Decimal) and not value.is_nan() and value >= 0, value
    return value


def assert_accepted_jobs_are_within_the_limits(conn: Conn, job_ids: list[int]) -> None:
    outside = conn.execute(
        "SELECT jq.id FROM conveyor.job_queue AS jq"
        " WHERE jq.id = ANY (%s)"
        "   AND NOT (octet_length(jq.kind) BETWEEN 1 AND 128 AND jq.kind ~ %s"
        "        AND octet_length(jq.queue) <= 63 AND jq.queue ~ '^[a-z0-9][a-z0-9_.-]*$'"
        "        AND jsonb_typeof(jq.payload) = 'object'"
        "        AND pg_column_size(jq.payload || '{}'::jsonb) <= %s"
        "        AND NOT jsonb_path_exists(jq.payload, %s::jsonpath)"
        "        AND jq.priority BETWEEN -1000 AND 1000"
        "        AND jq.run_at <= now() + interval '10 years'"
        "        AND coalesce(jq.max_attempts, 1) BETWEEN 1 AND 1000"
        "        AND coalesce(octet_length(jq.idempotency_key), 1) BETWEEN 1 AND 255)",
        (job_ids, KIND_PATTERN, MAX_BYTES, f"strict $.**{{{MAX_DEPTH + 1}}}"),
    ).fetchall()
    assert outside == [], f"accepted jobs outside the limits: {outside}"


def run_case(conn: Conn, case: Case, params: dict[str, Any]) -> None:
    """One example in a savepoint that is always rolled back."""
    call = f"{case.name}({', '.join(f'{k}={_short(v)}' for k, v in params.items())})"
    with conn.transaction(force_rollback=True):
        before = digest(conn)
        try:
            with conn.transaction():
                rows = conn.execute(case.call, params).fetchall()
        except psycopg.Error as error:
            event(f"error {error.sqlstate}")  # --hypothesis-show-statistics shows the spread
            assert_clean_error(error, call)
            assert digest(conn) == before, f"{call}: an error left a write behind"
            return
        value = assert_clean_answer(case, rows)
        if case.answer == "jsonb":
            event("ok" if value.get("ok") else f"refused {value.get('reason')}")
        if case.answer == "jsonb" and value.get("refused"):
            assert digest(conn) == before, f"{call}: refused {value} but changed a table"
        if case.name == "fn_job_enqueue" and value.get("ok"):
            assert_accepted_jobs_are_within_the_limits(conn, [value["job_id"]])
        if case.name == "fn_job_enqueue_many" and value.get("ok"):
            assert_accepted_jobs_are_within_the_limits(conn, list(value["job_ids"]))


def _short(value: Any) -> str:
    text = repr(value.obj if isinstance(value, Jsonb) else value)
    return text if len(text) <= 80 else f"{text[:60]}…({len(text)} chars)"


# --------------------------------------------------------------------------- the property


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@FUZZ_SETTINGS
@given(data=st.data())
def test_any_arguments_get_a_clean_answer_or_a_clean_error_and_no_stray_write(
    db: Conn, world: World, case: Case, data: st.DataObject
) -> None:
    params = data.draw(case.arguments(world), label="arguments")

    run_case(db, case, params)


def test_the_fuzzed_functions_are_every_public_function_of_phases_0_to_2(db: Conn) -> None:
    installed = db.execute(
        "SELECT DISTINCT substring(po.object_name FROM '\\.([a-z0-9_]+)\\(')"
        "  FROM conveyor_meta.phase_object AS po"
        " WHERE po.phase <= 2 AND po.object_kind = 'function'"
    ).fetchall()
    private = {"fn_iu_op_emit", "fn_iu_op_transition"}  # internal; fn_job__* by their name

    public = {name for (name,) in installed if "__" not in name and name not in private}
    assert public == {case.name for case in CASES}


# --------------------------------------------------------------------------- limits


def enqueue_error(conn: Conn, query: str, params: Any) -> errors.InvalidParameterValue:
    """Run an enqueue that must be refused as bad input; assert it wrote nothing."""
    before = digest(conn)
    with pytest.raises(errors.InvalidParameterValue) as raised, conn.transaction():
        conn.execute(query, params)
    assert digest(conn) == before
    return raised.value


def test_a_payload_over_max_bytes_is_rejected_naming_the_field_and_the_limit(jobs: Conn) -> None:
    payload = {"blob": "x" * (MAX_BYTES + 1), "secret": SENTINEL}

    error = enqueue_error(jobs, "SELECT fn_job_enqueue('fuzz.big', %s)", (Jsonb(payload),))

    message = error.diag.message_primary or ""
    assert "payload" in message and f"the limit is {MAX_BYTES} bytes" in message
    assert "queue.payload.max_bytes" in message
    assert SENTINEL not in message


def test_an_element_over_max_bytes_fails_the_whole_batch_naming_its_index(jobs: Conn) -> None:
    batch = [
        {"kind": "fuzz.small", "payload": {"n": 1}},
        {"kind": "fuzz.big", "payload": {"blob": "x" * (MAX_BYTES + 1), "secret": SENTINEL}},
    ]

    error = enqueue_error(jobs, "SELECT fn_job_enqueue_many(%s)", (Jsonb(batch),))

    message = error.diag.message_primary or ""
    assert message.startswith("fn_job_enqueue_many: jobs[1].payload is ")
    assert f"the limit is {MAX_BYTES} bytes" in message and SENTINEL not in message


def test_a_compressed_payload_is_measured_at_its_real_size(jobs: Conn) -> None:
    """A value read from a table arrives TOAST-compressed: 20 MB of repetitive JSON is a
    couple of hundred kB compressed and must not slip under the byte limit."""
    jobs.execute("CREATE TEMP TABLE fuzz_big (payload jsonb)")
    jobs.execute(
        "INSERT INTO fuzz_big"
        " SELECT jsonb_build_object('blob', repeat('x', 20000000), %s::text, %s::text)",
        ("secret", SENTINEL),
    )
    stored = scalar(jobs, "SELECT pg_column_size(payload) FROM fuzz_big")

    error = enqueue_error(
        jobs, "SELECT fn_job_enqueue('fuzz.big', b.payload) FROM fuzz_big AS b", None
    )

    message = error.diag.message_primary or ""
    assert stored < MAX_BYTES
    assert "payload is 2000" in message and f"the limit is {MAX_BYTES} bytes" in message


def test_a_compressed_payload_under_the_limit_is_accepted(jobs: Conn) -> None:
    jobs.execute("CREATE TEMP TABLE fuzz_small (payload jsonb)")
    jobs.execute("INSERT INTO fuzz_small SELECT jsonb_build_object('blob', repeat('x', 200000))")

    answer = scalar(jobs, "SELECT fn_job_enqueue('fuzz.small', s.payload) FROM fuzz_small AS s")

    assert scalar(jobs, "SELECT pg_column_compression(payload) FROM fuzz_small") is not None
    assert answer["ok"] is True


def test_a_payload_10000_levels_deep_is_rejected_naming_the_depth_limit(jobs: Conn) -> None:
    error = enqueue_error(jobs, "SELECT fn_job_enqueue('fuzz.deep', %s::jsonb)", (DEEP_10K,))

    message = error.diag.message_primary or ""
    assert "payload is nested more than 32 levels deep" in message
    assert "queue.payload.max_depth" in message and SENTINEL not in message


def test_a_batch_element_10000_levels_deep_is_rejected_naming_its_index(jobs: Conn) -> None:
    batch = '[{"kind": "fuzz.deep", "payload": ' + DEEP_10K + "}]"

    error = enqueue_error(jobs, "SELECT fn_job_enqueue_many(%s::jsonb)", (batch,))

    message = error.diag.message_primary or ""
    assert message.startswith("fn_job_enqueue_many: jobs[0].payload is nested more than 32")


def test_a_payload_exactly_at_the_depth_limit_is_accepted(jobs: Conn) -> None:
    answer = scalar(jobs, "SELECT fn_job_enqueue('fuzz.deep', %s)", (Jsonb(nested(MAX_DEPTH - 1)),))

    assert answer["ok"] is True


def test_a_queue_name_of_64_utf8_bytes_is_rejected_naming_the_byte_limit(jobs: Conn) -> None:
    queue = "é" * 32  # 32 characters, 64 bytes

    error = enqueue_error(jobs, "SELECT fn_job_enqueue(kind => 'fuzz.q', queue => %s)", (queue,))

    assert error.diag.message_primary == (
        "fn_job_enqueue: queue is 64 bytes; the limit is 63 bytes"
    )


def test_a_queue_name_of_63_bytes_is_accepted(jobs: Conn) -> None:
    answer = scalar(jobs, "SELECT fn_job_enqueue(kind => 'fuzz.q', queue => %s)", ("q" * 63,))

    assert answer["ok"] is True


@pytest.mark.parametrize(
    "kind",
    ["fuzz%s", "fuzz%", "fuzz;other", "fuzz'quote", "x'); DROP TABLE conveyor.job_queue; --"],
)
def test_a_kind_with_format_or_sql_metacharacters_is_rejected_naming_the_pattern(
    jobs: Conn, kind: str
) -> None:
    single = enqueue_error(jobs, "SELECT fn_job_enqueue(kind => %s)", (kind,))
    batch = enqueue_error(jobs, "SELECT fn_job_enqueue_many(%s)", (Jsonb([{"kind": kind}]),))

    quoted = "'" + kind.replace("'", "''") + "'"
    assert single.diag.message_primary == (
        f"fn_job_enqueue: kind {quoted} does not match {KIND_PATTERN}"
    )
    assert batch.diag.message_primary == (
        f"fn_job_enqueue_many: jobs[0].kind {quoted} does not match {KIND_PATTERN}"
    )
    assert scalar(jobs, "SELECT to_regclass('conveyor.job_queue') IS NOT NULL") is True


# --------------------------------------------------------------------------- payload bodies


def test_no_view_error_column_or_error_message_ever_shows_a_payload_body(jobs: Conn) -> None:
    queue = f"fuzz{uuid.uuid4().hex[:8]}"
    secret = {"note": SENTINEL, "nested": {"list": [SENTINEL]}}

    def enqueue(kind: str, **extra: Any) -> int:
        answer = scalar(
            jobs,
            "SELECT fn_job_enqueue(kind => %s, queue => %s, payload => %s, max_attempts => %s)",
            (kind, queue, Jsonb(secret), extra.get("max_attempts")),
        )
        return int(answer["job_id"])

    def claim(kind: str) -> str:
        claimed = scalar(
            jobs,
            "SELECT fn_job_claim(worker => 'w', queues => ARRAY[%s], kinds => ARRAY[%s])",
            (queue, kind),
        )["jobs"]
        return str(claimed[0]["lease_token"])

    enqueue("fuzz.waiting")  # stays queued: v_job_queue_backlog
    enqueue("fuzz.running")
    claim("fuzz.running")  # stays in progress: v_job_queue_in_progress
    retried = enqueue("fuzz.retried", max_attempts=3)
    scalar(
        jobs,
        "SELECT fn_job_fail_transient(%s, %s, 'TimeoutError: upstream took too long')",
        (retried, claim("fuzz.retried")),
    )
    exhausted = enqueue("fuzz.exhausted", max_attempts=1)
    scalar(
        jobs,
        "SELECT fn_job_fail_transient(%s, %s, 'ConnectionError: refused')",
        (exhausted, claim("fuzz.exhausted")),
    )
    broken = enqueue("fuzz.broken")
    scalar(
        jobs,
        "SELECT fn_job_fail_permanent(%s, %s, 'ValueError: bad input')",
        (broken, claim("fuzz.broken")),
    )
    scalar(jobs, "SELECT fn_job_cancel(%s, 'operator asked')", (enqueue("fuzz.cancelled"),))
    scalar(jobs, "SELECT fn_outbox_emit('staging.record_marked', %s, 'fuzz')", (Jsonb(secret),))
    jobs.execute("UPDATE event_outbox SET txid = '2' WHERE txid = pg_current_xact_id()")
    scalar(jobs, "SELECT iu_core.fn_iu_op_mark('fuzz', %s, 'fuzzer', 'ref://fuzz')", (queue,))
    messages = [
        enqueue_error(
            jobs,
            "SELECT fn_job_enqueue(kind => 'bad kind', payload => %s)",
            (Jsonb(secret),),
        ),
        enqueue_error(
            jobs,
            "SELECT fn_job_enqueue(kind => 'fuzz.big', payload => %s)",
            (Jsonb({**secret, "blob": "x" * MAX_BYTES}),),
        ),
        enqueue_error(
            jobs,
            "SELECT fn_job_enqueue_many(%s)",
            (
                Jsonb(
                    [
                        {"kind": "fuzz.ok", "payload": secret},
                        {"kind": "fuzz.x", "payload": [SENTINEL]},
                    ]
                ),
            ),
        ),
    ]

    views = [
        str(name)
        for (name,) in jobs.execute(
            "SELECT format('%I.%I', v.schemaname, v.viewname) FROM pg_views AS v"
            " WHERE v.schemaname IN ('conveyor', 'iu_core') ORDER BY 1"
        ).fetchall()
    ]
    shown = {
        view: str(
            scalar(jobs, f"SELECT coalesce(string_agg(v::text, E'\\n'), '') FROM {view} AS v")
        )
        for view in views
    }
    outside_payload_columns = scalar(
        jobs,
        "SELECT concat_ws(E'\\n',"
        " (SELECT string_agg((to_jsonb(jq) - 'payload')::text, E'\\n')"
        "    FROM conveyor.job_queue AS jq WHERE jq.queue = %(queue)s),"
        " (SELECT string_agg((to_jsonb(dl) - 'payload' - 'job')::text, E'\\n')"
        "    FROM conveyor.job_dead_letter AS dl WHERE dl.queue = %(queue)s),"
        " (SELECT string_agg((to_jsonb(eo) - 'payload')::text, E'\\n')"
        "    FROM conveyor.event_outbox AS eo WHERE eo.source = 'fuzz'))",
        {"queue": queue},
    )
    in_payload_columns = scalar(
        jobs,
        "SELECT (SELECT count(*) FROM conveyor.job_queue AS jq"
        "         WHERE jq.queue = %(queue)s AND jq.payload::text LIKE %(like)s)"
        "     + (SELECT count(*) FROM conveyor.job_dead_letter AS dl"
        "         WHERE dl.queue = %(queue)s AND dl.payload::text LIKE %(like)s"
        "           AND dl.job::text LIKE %(like)s)",
        {"queue": queue, "like": f"%{SENTINEL}%"},
    )
    dead_letter_errors = [
        str(error)
        for (error,) in jobs.execute(
            "SELECT dl.error FROM conveyor.job_dead_letter AS dl"
            " WHERE dl.queue = %s ORDER BY dl.id",
            (queue,),
        ).fetchall()
    ]
    in_views = {view: text.count(SENTINEL) for view, text in shown.items() if SENTINEL in text}
    said = [
        " ".join(
            part or ""
            for part in (
                error.diag.message_primary,
                error.diag.message_detail,
                error.diag.message_hint,
                error.diag.context,
            )
        )
        for error in messages
    ]

    assert in_payload_columns == 6  # the sentinel is in the data, so its absence below counts
    assert queue in "".join(shown.values())  # the views show these jobs
    assert in_views == {}
    assert SENTINEL not in str(outside_payload_columns)
    assert dead_letter_errors == ["ConnectionError: refused", "ValueError: bad input"]
    assert [SENTINEL in text for text in said] == [False, False, False]
