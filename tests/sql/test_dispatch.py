"""Phase 4, trigger-in / trigger-out: the consumer registry, fn_consumer_dispatch (exactly once per
(consumer, event), unmatched events, dead letters of failing consumers), the legacy
auto-instantiate path as a registry row, job subscriptions enforced by fn_job_claim(executor),
and the widened route CHECK with its refusing rollback.

One-session tests run in the rolled-back `db` transaction. Their events belong to that
transaction, which fn_outbox_read never returns, so (as the phase 0 and 3 gates do) they are given
txid 1 or 2 to stand in for "committed earlier" and the cursor is put right before them. Tests of
concurrency and crashes use autocommit connections, committed events and names of their own.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from conveyor.errors import PhaseError
from conveyor.phases import fingerprint, runner
from helpers import apply_phase, apply_phases, scalar, set_flag, unique

Connect = Callable[..., psycopg.Connection[Any]]
Conn = psycopg.Connection[Any]

DISPATCH = "queue.dispatch.enabled"
SUBSTRATE = "queue.job_substrate.enabled"
LEGACY = "iu.auto_instantiate.legacy_enabled"
COMPOSED = "iu.template.instance_auto_composed"
PROBE = "job.test_dispatch_probe"
OTHER = "job.test_dispatch_other"
MAX_ID = 9223372036854775807


@pytest.fixture(scope="module", autouse=True)
def phase4(dsn: str) -> None:
    """Apply phases 2, 3 and 4 (0 and 1 come from the template); register the test event types."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2, 3, 4))
        conn.execute("SELECT conveyor.fn_event_type_register(%s)", (PROBE,))
        conn.execute("SELECT conveyor.fn_event_type_register(%s)", (OTHER,))


@pytest.fixture
def on(db: Conn) -> Conn:
    """The `db` transaction with dispatch and the job substrate switched on."""
    set_flag(db, DISPATCH, True)
    set_flag(db, SUBSTRATE, True)
    return db


# --------------------------------------------------------------------------- helpers


def emit(conn: Conn, event_type: str, payload: dict[str, Any], source: str = "tests") -> int:
    return int(
        scalar(conn, "SELECT fn_outbox_emit(%s, %s, %s)", (event_type, Jsonb(payload), source))
    )


def age(conn: Conn, ids: list[int], txid: int = 1) -> None:
    """Make this transaction's events *ids* readable: txid 1 (or 2) sorts before every real one."""
    conn.execute("UPDATE event_outbox SET txid = %s::text::xid8 WHERE id = ANY(%s)", (txid, ids))


def rewind(conn: Conn, consumer: str = "dispatch", txid: int = 0, last_id: int = 0) -> None:
    conn.execute(
        "UPDATE event_outbox_cursor SET last_txid = %s::text::xid8, last_id = %s"
        " WHERE consumer = %s",
        (txid, last_id, consumer),
    )


def dispatch(conn: Conn, batch: int = 500) -> dict[str, Any]:
    return dict(scalar(conn, "SELECT fn_consumer_dispatch(batch => %s)", (batch,)))


def dispatch_aged(conn: Conn, ids: list[int]) -> dict[str, Any]:
    """Age *ids*, put the dispatch cursor at the beginning and dispatch exactly those events."""
    age(conn, ids)
    rewind(conn)
    return dispatch(conn, batch=len(ids))


def register(conn: Conn, consumer: str, pattern: str, action: str, **fields: Any) -> dict[str, Any]:
    names = ["consumer", "event_pattern", "action", *fields]
    values: list[Any] = [consumer, pattern, action]
    for value in fields.values():
        values.append(Jsonb(value) if isinstance(value, dict) else value)
    arguments = ", ".join(f"{name} => %s" for name in names)
    return dict(scalar(conn, f"SELECT fn_consumer_register({arguments})", values))


def enqueuer(conn: Conn, pattern: str = PROBE, **fields: Any) -> tuple[str, str]:
    """Register an enqueue_job consumer of a fresh kind; return (consumer, kind)."""
    consumer, kind = unique("t.c."), unique("t.k.")
    answer = register(conn, consumer, pattern, "enqueue_job", job_kind=kind, **fields)
    assert answer["ok"] and answer["created"], answer
    return consumer, kind


def jobs_of(conn: Conn, kind: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            "SELECT * FROM job_queue WHERE kind = %s ORDER BY id", (kind,)
        ).fetchall()


def create_function(conn: Conn, name: str, body: str) -> str:
    """A consumer function conveyor.<name>(event_id bigint) RETURNS jsonb with a plpgsql body."""
    conn.execute(
        f"CREATE FUNCTION conveyor.{name}(event_id bigint) RETURNS jsonb LANGUAGE plpgsql"
        f" AS $f$ BEGIN {body} END $f$"
    )
    return f"conveyor.{name}(bigint)"


# --------------------------------------------------------------------------- gating and registry


def test_dispatch_is_refused_while_the_flag_is_off_and_changes_nothing(db: Conn) -> None:
    set_flag(db, DISPATCH, False)
    before = scalar(db, "SELECT last_id FROM event_outbox_cursor WHERE consumer = 'dispatch'")

    answer = dispatch(db)

    assert answer == {
        "refused": True,
        "reason": "dispatch_disabled",
        "flag": "queue.dispatch.enabled",
    }
    assert scalar(db, "SELECT last_id FROM event_outbox_cursor WHERE consumer = 'dispatch'") == (
        before
    )


def test_dispatch_refuses_while_an_enqueue_consumer_needs_the_disabled_substrate(db: Conn) -> None:
    set_flag(db, DISPATCH, True)
    set_flag(db, SUBSTRATE, False)
    enqueuer(db)

    assert dispatch(db) == {
        "refused": True,
        "reason": "job_substrate_disabled",
        "flag": "queue.job_substrate.enabled",
    }


def test_applying_phase_4_hands_the_legacy_path_over_to_dispatch(db: Conn) -> None:
    row = db.execute(
        "SELECT action, target::text, enabled FROM consumer_registry"
        " WHERE consumer = 'legacy.auto_instantiate' AND event_pattern = %s",
        (COMPOSED,),
    ).fetchone()
    legacy = scalar(db, "SELECT fn_iu_auto_instantiate_run()")

    assert row == ("call_function", "fn_iu_auto_instantiate_from_event(bigint)", True)
    assert legacy == {
        "refused": True,
        "reason": "auto_instantiate_legacy_disabled",
        "flag": "iu.auto_instantiate.legacy_enabled",
    }
    assert scalar(db, "SELECT fn_config_get(%s)", (DISPATCH,)) is False


@pytest.mark.parametrize(
    ("pattern", "action", "fields", "argument"),
    [
        ("staging", "enqueue_job", {"job_kind": "k"}, "event_pattern"),
        ("staging.*.x", "enqueue_job", {"job_kind": "k"}, "event_pattern"),
        (PROBE, "notify", {}, "action"),
        (PROBE, "enqueue_job", {}, "job_kind"),
        (PROBE, "enqueue_job", {"job_kind": "k", "job_executor": "mot"}, "job_executor"),
        (PROBE, "enqueue_job", {"job_kind": "k", "payload_mapping": {"a": 1}}, "payload_mapping"),
        (PROBE, "call_function", {"target": "pg_catalog.txid_current()"}, "target"),
        (PROBE, "call_function", {"target": "conveyor.fn_outbox_horizon()"}, "target"),
        (PROBE, "call_function", {"target": "conveyor.fn_job_prune(integer)"}, "target"),
    ],
)
def test_register_rejects_a_bad_row_naming_the_argument(
    db: Conn, pattern: str, action: str, fields: dict[str, Any], argument: str
) -> None:
    with pytest.raises(errors.InvalidParameterValue) as caught:
        register(db, "t.bad", pattern, action, **fields)

    assert f"fn_consumer_register: {argument}" in str(caught.value)
    assert caught.value.diag.message_hint


def test_a_target_outside_conveyor_and_iu_core_is_refused_also_when_inserted_directly(
    db: Conn,
) -> None:
    db.execute(
        "CREATE FUNCTION public.t_outside(event_id bigint) RETURNS jsonb"
        " LANGUAGE sql AS $$ SELECT '{}'::jsonb $$"
    )

    with pytest.raises(errors.InvalidParameterValue, match="only conveyor and iu_core"):
        db.execute(
            "INSERT INTO consumer_registry (consumer, event_pattern, action, target)"
            " VALUES ('t.direct', %s, 'call_function', 'public.t_outside(bigint)')",
            (PROBE,),
        )


def test_registering_again_replaces_the_row_and_disable_switches_it_off(db: Conn) -> None:
    first = register(db, "t.re", PROBE, "enqueue_job", job_kind="a.one")
    again = register(db, "t.re", PROBE, "enqueue_job", job_kind="a.two", job_priority=5)
    disabled = dict(scalar(db, "SELECT fn_consumer_disable('t.re')"))

    row = db.execute(
        "SELECT job_kind, job_priority, enabled FROM v_consumer_registry WHERE consumer = 't.re'"
    ).fetchone()
    assert first["created"] and not again["created"]
    assert first["registry_id"] == again["registry_id"]
    assert disabled == {"ok": True, "consumer": "t.re", "disabled": 1}
    assert row == ("a.two", 5, False)


# --------------------------------------------------------------------------- dispatch effects


def test_an_enqueue_consumer_gets_one_job_per_event_keyed_consumer_colon_event(on: Conn) -> None:
    consumer, kind = enqueuer(on, job_queue="disp", job_priority=7)
    ids = [emit(on, PROBE, {"n": i}) for i in range(3)]

    answer = dispatch_aged(on, ids)

    jobs = jobs_of(on, kind)
    assert answer == {
        "ok": True,
        "read": 3,
        "matched": 3,
        "enqueued": 3,
        "called": 0,
        "unmatched": 0,
        "failed": 0,
        "more": True,
    }
    assert [j["idempotency_key"] for j in jobs] == [f"{consumer}:{i}" for i in ids]
    assert [j["payload"] for j in jobs] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {(j["queue"], j["priority"], j["status"]) for j in jobs} == {("disp", 7, "queued")}


def test_a_payload_mapping_picks_event_fields_and_the_event_id(on: Conn) -> None:
    _, kind = enqueuer(
        on,
        payload_mapping={
            "record": "record_id",
            "event": "$event_id",
            "type": "$event_type",
            "gone": "missing",
        },
    )
    event = emit(on, PROBE, {"record_id": 42, "secret": "not copied"})

    dispatch_aged(on, [event])

    [job] = jobs_of(on, kind)
    assert job["payload"] == {"record": 42, "event": event, "type": PROBE, "gone": None}


def test_domain_patterns_match_by_prefix_and_exact_patterns_only_their_type(on: Conn) -> None:
    _, domain_kind = enqueuer(on, pattern="job.*")
    _, exact_kind = enqueuer(on, pattern=PROBE)
    ids = [emit(on, PROBE, {}), emit(on, OTHER, {})]

    answer = dispatch_aged(on, ids)

    assert answer["matched"] == 3
    assert len(jobs_of(on, domain_kind)) == 2
    assert len(jobs_of(on, exact_kind)) == 1


def test_a_disabled_consumer_gets_nothing(on: Conn) -> None:
    consumer, kind = enqueuer(on)
    on.execute("SELECT fn_consumer_disable(%s)", (consumer,))

    dispatch_aged(on, [emit(on, PROBE, {})])

    assert jobs_of(on, kind) == []


def test_an_event_no_consumer_matches_is_recorded_as_unmatched(on: Conn) -> None:
    event = emit(on, OTHER, {"x": 1})

    answer = dispatch_aged(on, [event])

    row = on.execute(
        "SELECT event_type, emitted_at IS NOT NULL FROM v_consumer_unmatched WHERE event_id = %s",
        (event,),
    ).fetchone()
    assert answer["unmatched"] == 1 and answer["matched"] == 0
    assert row == (OTHER, True)


def test_a_raising_consumer_is_dead_lettered_and_the_others_still_get_the_event(on: Conn) -> None:
    boom = create_function(
        on,
        "t_boom",
        "INSERT INTO dot_config (key, value) VALUES ('t.boom.side_effect', 'true');"
        " RAISE EXCEPTION 'boom %', event_id;",
    )
    ok = create_function(on, "t_ok", "RETURN jsonb_build_object('ok', true, 'seen', event_id);")
    register(on, "t.boom", PROBE, "call_function", target=boom)
    register(on, "t.ok", PROBE, "call_function", target=ok)
    _, kind = enqueuer(on)
    event = emit(on, PROBE, {})

    answer = dispatch_aged(on, [event])

    dead = on.execute(
        "SELECT consumer, event_type, error FROM v_consumer_dead_letter WHERE event_id = %s",
        (event,),
    ).fetchall()
    deliveries = dict(
        on.execute(
            "SELECT consumer, outcome FROM consumer_delivery WHERE event_id = %s", (event,)
        ).fetchall()
    )
    assert answer["called"] == 1 and answer["failed"] == 1 and answer["enqueued"] == 1
    assert dead == [("t.boom", PROBE, f"P0001: boom {event}")]
    assert deliveries["t.boom"] == "failed" and deliveries["t.ok"] == "called"
    assert len(jobs_of(on, kind)) == 1
    # only the failing call was rolled back: its side effect is gone, the rest stayed
    assert scalar(on, "SELECT count(*) FROM dot_config WHERE key = 't.boom.side_effect'") == 0


def test_a_refusing_consumer_is_dead_lettered_with_the_reason(on: Conn) -> None:
    event = emit(on, COMPOSED, {"template": "t", "instance_key": ""})  # invalid instance_key

    answer = dispatch_aged(on, [event])

    error = scalar(on, "SELECT error FROM consumer_dead_letter WHERE event_id = %s", (event,))
    assert answer["failed"] == 1 and answer["called"] == 0
    assert "refused: invalid_payload" in error


def test_a_job_too_large_to_enqueue_is_dead_lettered_not_blocking_the_batch(on: Conn) -> None:
    _, kind = enqueuer(on)
    on.execute("UPDATE dot_config SET value = '100' WHERE key = 'queue.payload.max_bytes'")
    ids = [emit(on, PROBE, {"big": "x" * 500}), emit(on, PROBE, {"n": 1})]

    answer = dispatch_aged(on, ids)

    assert answer["enqueued"] == 1 and answer["failed"] == 1
    assert [j["payload"] for j in jobs_of(on, kind)] == [{"n": 1}]
    assert "invalid job: payload" in scalar(
        on, "SELECT error FROM consumer_dead_letter WHERE event_id = %s", (ids[0],)
    )


def test_redispatching_after_the_jobs_finished_enqueues_nothing_again(on: Conn) -> None:
    _, kind = enqueuer(on)
    ids = [emit(on, PROBE, {"n": i}) for i in range(5)]
    dispatch_aged(on, ids)
    on.execute(
        "UPDATE job_queue SET status = 'succeeded', finished_at = now() WHERE kind = %s", (kind,)
    )  # the live-only idempotency index no longer holds their keys

    rewind(on)
    again = dispatch(on, batch=len(ids))

    assert again["matched"] == 5 and again["enqueued"] == 0 and again["failed"] == 0
    assert len(jobs_of(on, kind)) == 5


# --------------------------------------------------------------------------- legacy equivalence


def _composed_payloads(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    payloads: list[dict[str, Any]] = []
    for i in range(count):
        params: Any = {
            "n": rng.randint(-(10**6), 10**6),
            "label": rng.choice(["a", "ß", "日本", "with 'quote'", ""]),
            "nested": {
                "list": [rng.random() for _ in range(rng.randint(0, 3))],
                "flag": rng.choice([True, False, None]),
            },
        }
        payload: dict[str, Any] = {"template": f"tpl.{rng.randint(1, 9)}", "instance_key": f"k{i}"}
        choice = rng.random()
        if choice < 0.1:
            payload["params"] = None  # defaults to {}
        elif choice < 0.15:
            payload["params"] = [1, 2]  # invalid: refused by both paths
        elif choice < 0.85:
            payload["params"] = params
        payloads.append(payload)
    return payloads


def test_legacy_and_dispatch_create_identical_instances_for_300_generated_events(on: Conn) -> None:
    payloads = _composed_payloads(300, seed=4)
    sources = [f"src.{i % 7}" for i in range(len(payloads))]
    legacy_ids = [
        emit(on, COMPOSED, {**p, "instance_key": f"L-{p['instance_key']}"}, s)
        for p, s in zip(payloads, sources, strict=True)
    ]
    dispatch_ids = [
        emit(on, COMPOSED, {**p, "instance_key": f"D-{p['instance_key']}"}, s)
        for p, s in zip(payloads, sources, strict=True)
    ]
    age(on, legacy_ids, txid=1)
    age(on, dispatch_ids, txid=2)
    set_flag(on, LEGACY, True)
    rewind(on, "legacy.auto_instantiate")
    legacy = dict(scalar(on, "SELECT fn_iu_auto_instantiate_run(batch => %s)", (len(legacy_ids),)))
    set_flag(on, LEGACY, False)
    rewind(on, "dispatch", txid=1, last_id=MAX_ID)

    answer = dispatch(on, batch=len(dispatch_ids))

    def instance(event_id: int) -> dict[str, Any] | None:
        with on.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(
                "SELECT * FROM iu_template_instance WHERE source_event_id = %s", (event_id,)
            ).fetchone()
        if row is None:
            return None
        return {k: v for k, v in row.items() if k not in {"id", "instance_key", "source_event_id"}}

    pairs = [(instance(a), instance(b)) for a, b in zip(legacy_ids, dispatch_ids, strict=True)]
    invalid = sum(1 for p in payloads if isinstance(p.get("params"), list))
    assert legacy["created"] == len(payloads) - invalid
    assert answer["called"] == len(payloads) - invalid and answer["failed"] == invalid
    assert all(a == b for a, b in pairs), next((a, b) for a, b in pairs if a != b)
    assert sum(1 for a, _ in pairs if a is None) == invalid


# --------------------------------------------------------------------------- committed data


@pytest.fixture
def live(connect: Connect) -> Iterator[Conn]:
    """An autocommit connection with dispatch and the substrate on; test consumers removed after."""
    conn = connect()
    set_flag(conn, DISPATCH, True)
    set_flag(conn, SUBSTRATE, True)
    yield conn
    conn.execute("DELETE FROM consumer_registry WHERE consumer LIKE 't.%'")


def drain(conn: Conn, batch: int = 500) -> list[dict[str, Any]]:
    answers = []
    while True:
        answer = dispatch(conn, batch)
        assert answer.get("ok"), answer
        answers.append(answer)
        if answer["read"] == 0:
            return answers


def emit_many(conn: Conn, count: int, event_type: str = PROBE) -> list[int]:
    rows = conn.execute(
        "SELECT fn_outbox_emit(%s, jsonb_build_object('n', g)) FROM generate_series(1, %s) AS g",
        (event_type, count),
    ).fetchall()
    return [int(r[0]) for r in rows]


def test_two_dispatchers_at_once_handle_each_of_10000_events_exactly_once(
    live: Conn, connect: Connect
) -> None:
    drain(live)  # start from an empty backlog
    consumers = [enqueuer(live, pattern="job.*"), enqueuer(live, pattern=PROBE)]
    ids = emit_many(live, 10_000)
    errors_seen: list[BaseException] = []

    def run() -> None:
        try:
            drain(connect(), batch=500)
        except BaseException as error:  # reported by the assertion below
            errors_seen.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert errors_seen == []
    names = [c for c, _ in consumers]
    kinds = [k for _, k in consumers]
    deliveries = scalar(
        live,
        "SELECT count(*) FROM consumer_delivery WHERE consumer = ANY(%s) AND event_id = ANY(%s)",
        (names, ids),
    )
    jobs, distinct_keys = live.execute(
        "SELECT count(*), count(DISTINCT idempotency_key) FROM job_queue WHERE kind = ANY(%s)",
        (kinds,),
    ).fetchone()  # type: ignore[misc]
    assert deliveries == len(ids) * len(consumers)
    assert jobs == distinct_keys == len(ids) * len(consumers)
    live.execute("DELETE FROM job_queue WHERE kind = ANY(%s)", (kinds,))


def test_a_dispatcher_killed_before_commit_loses_and_doubles_nothing(
    live: Conn, connect: Connect
) -> None:
    drain(live)
    consumer, kind = enqueuer(live)
    ids = emit_many(live, 200)
    victim = connect(autocommit=False)
    pid = victim.info.backend_pid

    first = dispatch(victim, batch=100)  # jobs enqueued, cursor advanced, not committed
    assert first["enqueued"] == 100
    assert scalar(live, "SELECT pg_terminate_backend(%s)", (pid,)) is True
    with pytest.raises(psycopg.OperationalError):
        victim.execute("SELECT 1")
    drain(live, batch=100)

    per_event = live.execute(
        "SELECT count(*) FILTER (WHERE n <> 1), count(*) FROM ("
        " SELECT count(jq.id) AS n FROM unnest(%s::bigint[]) AS e(id)"
        " LEFT JOIN job_queue AS jq ON jq.kind = %s AND jq.idempotency_key = %s || ':' || e.id"
        " GROUP BY e.id) AS x",
        (ids, kind, consumer),
    ).fetchone()
    deliveries = scalar(
        live, "SELECT count(*) FROM consumer_delivery WHERE consumer = %s", (consumer,)
    )
    assert per_event == (0, len(ids))
    assert deliveries == len(ids)
    live.execute("DELETE FROM job_queue WHERE kind = %s", (kind,))


def test_dispatch_throughput_for_10000_events_with_one_enqueueing_consumer(
    live: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    drain(live)
    _, kind = enqueuer(live)
    ids = emit_many(live, 10_000)

    started = time.perf_counter()
    answers = drain(live, batch=500)
    elapsed = time.perf_counter() - started

    assert sum(a["enqueued"] for a in answers) == len(ids)
    with capsys.disabled():
        print(
            f"\ndispatch throughput: {len(ids)} events in {elapsed:.2f} s"
            f" = {len(ids) / elapsed:,.0f} events/s (batch 500, one enqueue_job consumer)"
        )
    live.execute("DELETE FROM job_queue WHERE kind = %s", (kind,))


# --------------------------------------------------------------------------- subscriptions


def _claim(conn: Conn, executor: str | None, queue: str, batch: int = 100) -> dict[str, Any]:
    return dict(
        scalar(
            conn,
            "SELECT fn_job_claim(worker => 'w', queues => ARRAY[%s], batch => %s, executor => %s)",
            (queue, batch, executor),
        )
    )


def _enqueue(conn: Conn, kinds: list[str], queue: str) -> None:
    for kind in kinds:
        answer = scalar(conn, "SELECT fn_job_enqueue(kind => %s, queue => %s)", (kind, queue))
        assert answer["ok"], answer


def test_an_executor_claims_only_the_kinds_it_is_subscribed_to(on: Conn) -> None:
    queue = unique("q")
    _enqueue(on, ["mail.send", "mail.bounce", "report.build", "mailer.x", "cut.run"], queue)
    on.execute("SELECT fn_job_subscribe('agent', 'mail.*')")
    on.execute("SELECT fn_job_subscribe('agent', 'cut.run')")

    claimed = _claim(on, "agent", queue)["jobs"]

    assert sorted(j["kind"] for j in claimed) == ["cut.run", "mail.bounce", "mail.send"]


def test_without_an_executor_the_claim_is_unchanged(on: Conn) -> None:
    queue = unique("q")
    _enqueue(on, ["mail.send", "report.build"], queue)
    on.execute("SELECT fn_job_subscribe('agent', 'mail.*')")

    answer = dict(
        scalar(on, "SELECT fn_job_claim(worker => 'w', queues => ARRAY[%s], batch => 5)", (queue,))
    )

    assert sorted(j["kind"] for j in answer["jobs"]) == ["mail.send", "report.build"]


def test_an_unsubscribed_kind_is_never_claimed_by_an_executor(on: Conn) -> None:
    queue = unique("q")
    _enqueue(on, ["report.build"] * 3, queue)
    on.execute("SELECT fn_job_subscribe('codex', 'mail.*')")

    assert _claim(on, "codex", queue)["jobs"] == []
    assert _claim(on, "dot", queue) == {"ok": True, "jobs": [], "subscribed": False}
    on.execute("SELECT fn_job_unsubscribe('codex', 'mail.*')")
    assert _claim(on, "codex", queue)["subscribed"] is False
    assert (
        scalar(
            on, "SELECT count(*) FROM job_queue WHERE queue = %s AND status = 'queued'", (queue,)
        )
        == 3
    )


def test_an_unknown_executor_such_as_mot_is_rejected(on: Conn) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="is not an executor"):
        _claim(on, "mot", "default")


def test_subscribing_an_unknown_executor_is_rejected(on: Conn) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="is not an executor"):
        on.execute("SELECT fn_job_subscribe('mot', 'x.*')")


def test_a_paused_queue_stays_paused_for_an_executor(on: Conn) -> None:
    queue = unique("q")
    _enqueue(on, ["mail.send"], queue)
    on.execute("SELECT fn_job_subscribe('agent', 'mail.*')")
    on.execute("SELECT fn_job_queue_pause(%s)", (queue,))

    assert _claim(on, "agent", queue) == {"ok": True, "jobs": [], "paused": True}


def test_claim_keeps_its_phase_1_grants(db: Conn) -> None:
    signature = "conveyor.fn_job_claim(text, text[], text[], integer, integer, text)"
    grants = {
        role: scalar(db, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, signature))
        for role in ("conveyor_worker", "conveyor_admin", "conveyor_reader")
    }
    assert grants == {"conveyor_worker": True, "conveyor_admin": True, "conveyor_reader": False}


# --------------------------------------------------------------------------- rollback


def test_up_down_up_round_trips_the_catalog_and_down_refuses_while_a_new_domain_is_used(
    empty_dsn: str,
) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        for number in (0, 1, 2, 3):
            apply_phase(conn, number)
        before = fingerprint.catalog_fingerprint(conn)
        claim_before = scalar(
            conn,
            "SELECT to_regprocedure("
            "'conveyor.fn_job_claim(text, text[], text[], integer, integer)')",
        )
        apply_phase(conn, 4)
        applied = fingerprint.catalog_fingerprint(conn)
        conn.execute("SELECT conveyor.fn_event_type_register('customer.t_probe')")
        conn.execute(
            "INSERT INTO conveyor.iu_sql_event_route"
            " (route, source_table, operation, target_event_type, target_event_domain)"
            " VALUES ('t.customer', 'conveyor.event_outbox', 'INSERT', 'customer.t_probe',"
            "         'customer')"
        )

        with pytest.raises(PhaseError, match="routes use a domain outside iu, staging, system"):
            runner.rollback(conn, 4, "tests")
        still = fingerprint.catalog_fingerprint(conn)
        conn.execute("DELETE FROM conveyor.iu_sql_event_route WHERE route = 't.customer'")
        runner.rollback(conn, 4, "tests")
        after_down = fingerprint.catalog_fingerprint(conn)
        legacy_flag = scalar(conn, "SELECT conveyor.fn_config_get(%s)", (LEGACY,))
        again = apply_phase(conn, 4)

        assert claim_before is not None
        assert fingerprint.describe_difference(applied, still) == []
        assert fingerprint.describe_difference(before, after_down) == []
        assert legacy_flag is True
        assert fingerprint.describe_difference(applied, fingerprint.catalog_fingerprint(conn)) == []
        assert again.gate is not None and again.gate.passed, again.gate


def test_the_dispatch_cursor_starts_where_the_legacy_cursor_stands(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        for number in (0, 1, 2, 3):
            apply_phase(conn, number)
        conn.execute(
            'SELECT conveyor.fn_outbox_emit(%s, \'{"template": "t", "instance_key": "k"}\')',
            (COMPOSED,),
        )
        handled = scalar(conn, "SELECT conveyor.fn_iu_auto_instantiate_run()")
        legacy = conn.execute(
            "SELECT last_txid::text, last_id FROM conveyor.event_outbox_cursor"
            " WHERE consumer = 'legacy.auto_instantiate'"
        ).fetchone()
        apply_phase(conn, 4)
        started = conn.execute(
            "SELECT last_txid::text, last_id FROM conveyor.event_outbox_cursor"
            " WHERE consumer = 'dispatch'"
        ).fetchone()
        set_flag(conn, DISPATCH, True)
        answer = scalar(conn, "SELECT conveyor.fn_consumer_dispatch()")

    assert handled["created"] == 1
    assert started == legacy and legacy[1] > 0  # type: ignore[index]
    assert answer["read"] == 0  # the event the legacy path handled is not dispatched again
