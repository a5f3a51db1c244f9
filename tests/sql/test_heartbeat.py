"""Phase 3, heartbeats and the silence alarm: register / beat / deregister, the stale check and its
one-event-per-episode rule, v_queue_health, the outbound worker's trigger, the watchdog and
red-zones receivers, and the NOTIFY bridge. Plain SQL on real PostgreSQL; time is simulated by
backdating last_beat_at (no sleeping). One-session tests run in the rolled-back `db` transaction;
tests of receivers, row locks and NOTIFY use autocommit connections and committed rows under
names of their own, removed afterwards.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from helpers import apply_phases, scalar, set_flag, unique, wait_until

Connect = Callable[..., psycopg.Connection[Any]]
Conn = psycopg.Connection[Any]

HEARTBEAT = "queue.heartbeat.enabled"
SUBSTRATE = "queue.job_substrate.enabled"
BRIDGE = "queue.notify.bridge_enabled"
SILENT = "system/queue_worker_silent"
RECOVERED = "system/queue_worker_recovered"
CHANNEL = "conveyor_jobs"


@pytest.fixture(scope="module", autouse=True)
def phase3(dsn: str) -> None:
    """Apply phases 2 and 3 to this module's database (0 and 1 come from the template)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2, 3))


class Live:
    """Autocommit connections for committed-data tests, and the components they leave behind."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self.names: list[str] = []

    def __call__(self, autocommit: bool = True) -> Conn:
        return self._connect(autocommit=autocommit)

    def component(self, prefix: str = "w-") -> str:
        """A fresh component name, removed (with its alerts and red zone) after the test."""
        name = unique(prefix)
        self.names.append(name)
        return name


@pytest.fixture
def live(connect: Connect) -> Iterator[Live]:
    helper = Live(connect)
    yield helper
    cleanup = connect()
    cleanup.execute("DELETE FROM queue_heartbeat WHERE component = ANY(%s)", (helper.names,))
    cleanup.execute("DELETE FROM queue_red_zone WHERE component = ANY(%s)", (helper.names,))
    cleanup.execute("DELETE FROM queue_watchdog_alert WHERE component = ANY(%s)", (helper.names,))


# --------------------------------------------------------------------------- helpers


def register(
    conn: Conn,
    component: str,
    kind: str = "worker",
    cadence: int = 10,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return dict(
        scalar(
            conn,
            "SELECT fn_heartbeat_register(component => %s, component_kind => %s,"
            " cadence_seconds => %s, metadata => %s)",
            (component, kind, cadence, Jsonb(metadata or {})),
        )
    )


def beat(conn: Conn, component: str, epoch: Any = None) -> dict[str, Any]:
    return dict(
        scalar(conn, "SELECT fn_heartbeat_beat(component => %s, epoch => %s)", (component, epoch))
    )


def deregister(conn: Conn, component: str, epoch: Any = None) -> dict[str, Any]:
    return dict(
        scalar(
            conn,
            "SELECT fn_heartbeat_deregister(component => %s, epoch => %s)",
            (component, epoch),
        )
    )


def stale_check(conn: Conn) -> dict[str, Any]:
    return dict(scalar(conn, "SELECT fn_heartbeat_stale_check()"))


def backdate(conn: Conn, component: str, seconds: float) -> None:
    """Pretend the component's last sign of life was *seconds* ago (the DB clock trick)."""
    conn.execute(
        "UPDATE queue_heartbeat"
        "   SET last_beat_at = clock_timestamp() - make_interval(secs => %(s)s),"
        "       registered_at = least(registered_at,"
        "                             clock_timestamp() - make_interval(secs => %(s)s))"
        " WHERE component = %(c)s",
        {"s": seconds, "c": component},
    )


def events(conn: Conn, event_type: str, component: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT payload FROM event_outbox WHERE event_type = %s AND payload->>'component' = %s"
        " ORDER BY id",
        (event_type, component),
    ).fetchall()
    return [dict(r[0]) for r in rows]


def health(conn: Conn, component: str) -> dict[str, Any]:
    cursor = conn.execute("SELECT * FROM v_queue_health WHERE component = %s", (component,))
    row = cursor.fetchone()
    assert row is not None, f"no v_queue_health row for {component}"
    return dict(zip([c.name for c in cursor.description or []], row, strict=True))


def drain(conn: Conn, function: str) -> list[dict[str, Any]]:
    """Call a receiver until it has read everything readable."""
    answers = []
    for _ in range(1000):
        answers.append(dict(scalar(conn, f"SELECT {function}(batch => 10000)")))
        if not answers[-1].get("more"):
            return answers
    raise AssertionError(f"{function} kept reporting more")


def alerts(conn: Conn, component: str) -> list[tuple[str, int]]:
    rows = conn.execute(
        "SELECT alert, event_id FROM queue_watchdog_alert WHERE component = %s ORDER BY id",
        (component,),
    ).fetchall()
    return [(str(r[0]), int(r[1])) for r in rows]


def waiting_on_lock(observer: Conn, pid: int) -> bool:
    return bool(
        scalar(
            observer,
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            (pid,),
        )
    )


# --------------------------------------------------------------------------- register / beat


def test_register_answers_a_new_epoch_for_every_incarnation(db: Conn) -> None:
    name = unique("w-")

    first = register(db, name, metadata={"queues": ["default"], "pid": 1})
    second = register(db, name)

    assert first["ok"] is True and first["component"] == name
    assert second["epoch"] != first["epoch"]
    assert (
        scalar(db, "SELECT epoch::text FROM queue_heartbeat WHERE component = %s", (name,))
        == (second["epoch"])
    )


def test_a_registered_component_has_not_beaten_until_it_beats(db: Conn) -> None:
    name = unique("w-")
    register(db, name)

    assert health(db, name)["status_hint"] == "never"
    answer = beat(db, name)
    assert answer["ok"] is True and answer["last_beat_at"] is not None
    assert health(db, name)["status_hint"] == "fresh"


def test_beats_advance_last_beat_at_within_one_long_transaction(db: Conn) -> None:
    name = unique("w-")
    register(db, name)

    first = beat(db, name)["last_beat_at"]
    second = beat(db, name)["last_beat_at"]

    assert second > first  # clock_timestamp(), not the frozen now() (RELIABILITY #40)


def test_a_beat_with_a_superseded_epoch_is_refused_and_changes_nothing(db: Conn) -> None:
    name = unique("w-")
    old = register(db, name)["epoch"]
    new = register(db, name)["epoch"]

    answer = beat(db, name, old)

    assert answer == {"refused": True, "reason": "epoch_superseded", "component": name}
    assert (
        scalar(db, "SELECT last_beat_at FROM queue_heartbeat WHERE component = %s", (name,)) is None
    )
    assert beat(db, name, new)["ok"] is True


def test_a_beat_of_an_unknown_component_is_refused_as_not_registered(db: Conn) -> None:
    name = unique("ghost-")

    assert beat(db, name) == {"refused": True, "reason": "not_registered", "component": name}


def test_a_beat_merges_metadata_into_the_row(db: Conn) -> None:
    name = unique("w-")
    register(db, name, metadata={"queues": ["a"], "pid": 1})

    scalar(
        db,
        "SELECT fn_heartbeat_beat(component => %s, metadata => %s)",
        (name, Jsonb({"in_flight": 3})),
    )

    assert scalar(db, "SELECT metadata FROM queue_heartbeat WHERE component = %s", (name,)) == {
        "queues": ["a"],
        "pid": 1,
        "in_flight": 3,
    }


def test_deregister_ends_the_incarnation_and_a_later_beat_is_refused(db: Conn) -> None:
    name = unique("w-")
    epoch = register(db, name)["epoch"]

    answer = deregister(db, name, epoch)

    assert answer["ok"] is True and answer["already"] is False
    assert deregister(db, name, epoch)["already"] is True
    assert beat(db, name, epoch)["reason"] == "not_registered"
    assert (
        db.execute("SELECT 1 FROM v_queue_health WHERE component = %s", (name,)).fetchone() is None
    )


def test_an_old_incarnation_cannot_deregister_its_successor(db: Conn) -> None:
    name = unique("w-")
    old = register(db, name)["epoch"]
    register(db, name)

    assert deregister(db, name, old)["reason"] == "epoch_superseded"
    assert (
        scalar(db, "SELECT deregistered_at FROM queue_heartbeat WHERE component = %s", (name,))
        is None
    )


def test_registering_again_after_a_deregistration_brings_the_component_back(db: Conn) -> None:
    name = unique("w-")
    deregister(db, name, register(db, name)["epoch"])

    register(db, name)

    assert (
        scalar(db, "SELECT deregistered_at FROM queue_heartbeat WHERE component = %s", (name,))
        is None
    )
    assert health(db, name)["status_hint"] == "never"


def test_heartbeat_functions_refuse_while_heartbeats_are_disabled(db: Conn) -> None:
    name = unique("w-")
    set_flag(db, HEARTBEAT, False)
    refusal = {"refused": True, "reason": "heartbeat_disabled", "flag": "queue.heartbeat.enabled"}

    assert register(db, name) == refusal
    assert beat(db, name) == refusal
    assert deregister(db, name) == refusal
    assert stale_check(db) == refusal
    assert scalar(db, "SELECT fn_watchdog_receive()") == refusal
    assert scalar(db, "SELECT fn_red_zones_receive()") == refusal
    assert scalar(db, "SELECT count(*) FROM queue_heartbeat WHERE component = %s", (name,)) == 0


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (("", "worker", 5, {}), "component"),
        (("x\n", "worker", 5, {}), "component"),
        (("w", "robot", 5, {}), "component_kind"),
        (("w", "worker", 0, {}), "cadence_seconds"),
        (("w", "worker", 86401, {}), "cadence_seconds"),
        (("w", "worker", 5, ["not", "an", "object"]), "metadata"),
        (("w", "worker", 5, {"db_password": "x"}), "credential"),
        (("w", "worker", 5, {"blob": "x" * 9000}), "8192 bytes"),
    ],
)
def test_register_rejects_bad_input_naming_the_argument(
    db: Conn, arguments: tuple[Any, ...], named: str
) -> None:
    component, kind, cadence, metadata = arguments
    with pytest.raises(errors.InvalidParameterValue, match=named):
        scalar(
            db,
            "SELECT fn_heartbeat_register(%s, %s, %s, %s)",
            (component, kind, cadence, Jsonb(metadata)),
        )


def test_a_worker_role_registers_and_beats_without_reading_any_table(db: Conn) -> None:
    name = unique("w-")
    db.execute("SET ROLE conveyor_worker")

    epoch = register(db, name)["epoch"]
    assert beat(db, name, epoch)["ok"] is True
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("SELECT * FROM queue_heartbeat")


def test_a_reader_sees_v_queue_health_but_not_the_tables(db: Conn) -> None:
    db.execute("SET ROLE conveyor_reader")

    db.execute("SELECT * FROM v_queue_health").fetchall()
    db.execute("SELECT * FROM v_red_zones").fetchall()
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("SELECT fn_heartbeat_stale_check()")


# --------------------------------------------------------------------------- stale check


def test_one_silent_event_per_episode_however_often_the_check_runs(db: Conn) -> None:
    name = unique("w-")
    register(db, name, cadence=10)
    beat(db, name)
    backdate(db, name, 1000)

    answers = [stale_check(db) for _ in range(5)]

    assert [name in a["silent"] for a in answers] == [True, False, False, False, False]
    silent = events(db, SILENT, name)
    assert len(silent) == 1
    assert silent[0]["kind"] == "worker" and silent[0]["threshold_seconds"] == 300
    assert set(silent[0]) == {
        "component",
        "kind",
        "epoch",
        "last_beat_at",
        "registered_at",
        "cadence_seconds",
        "threshold_seconds",
        "silent_since",
    }
    assert health(db, name)["status_hint"] == "stale"


def test_a_component_that_never_beat_goes_silent_after_its_threshold(db: Conn) -> None:
    name = unique("w-")
    register(db, name)
    backdate(db, name, 1000)
    db.execute("UPDATE queue_heartbeat SET last_beat_at = NULL WHERE component = %s", (name,))

    assert name in stale_check(db)["silent"]


def test_a_fresh_or_late_component_is_not_reported(db: Conn) -> None:
    name = unique("w-")
    register(db, name, cadence=10)
    beat(db, name)
    backdate(db, name, 200)  # late (past 2 × cadence), not yet past the 300 s threshold

    assert name not in stale_check(db)["silent"]
    assert events(db, SILENT, name) == []


def test_beats_resuming_close_the_episode_with_one_recovered_event(db: Conn) -> None:
    name = unique("w-")
    register(db, name)
    beat(db, name)
    backdate(db, name, 1000)
    stale_check(db)

    beat(db, name)
    first = stale_check(db)
    second = stale_check(db)

    assert name in first["recovered"] and name not in second["recovered"]
    recovered = events(db, RECOVERED, name)
    assert len(recovered) == 1 and recovered[0]["deregistered"] is False
    assert (
        scalar(db, "SELECT silent_since FROM queue_heartbeat WHERE component = %s", (name,)) is None
    )


def test_a_new_silence_after_recovery_is_a_new_episode_with_its_own_event(db: Conn) -> None:
    name = unique("w-")
    register(db, name)
    for _ in range(2):
        backdate(db, name, 1000)
        stale_check(db)
        beat(db, name)
        stale_check(db)

    assert len(events(db, SILENT, name)) == 2
    assert len(events(db, RECOVERED, name)) == 2


def test_a_graceful_deregistration_never_goes_silent(db: Conn) -> None:
    name = unique("w-")
    epoch = register(db, name)["epoch"]
    beat(db, name, epoch)
    deregister(db, name, epoch)
    backdate(db, name, 100000)

    assert name not in stale_check(db)["silent"]
    assert events(db, SILENT, name) == []


def test_deregistering_during_an_episode_closes_it_with_a_recovered_event(db: Conn) -> None:
    name = unique("w-")
    register(db, name)
    backdate(db, name, 1000)
    stale_check(db)

    deregister(db, name)
    answer = stale_check(db)

    assert name in answer["recovered"]
    assert events(db, RECOVERED, name)[0]["deregistered"] is True


def test_a_rows_own_threshold_overrides_the_config(db: Conn) -> None:
    name = unique("w-")
    register(db, name, cadence=1)
    db.execute(
        "UPDATE queue_heartbeat SET stale_threshold_seconds = 5 WHERE component = %s", (name,)
    )
    beat(db, name)
    backdate(db, name, 10)

    assert name in stale_check(db)["silent"]


def test_a_slow_cadence_stretches_the_default_threshold(db: Conn) -> None:
    name = unique("w-")
    register(db, name, cadence=600)  # beats every 10 minutes: 300 s of silence is normal
    beat(db, name)
    backdate(db, name, 900)

    assert name not in stale_check(db)["silent"]
    assert health(db, name)["stale_threshold_seconds"] == 1200


def test_two_concurrent_stale_checks_emit_one_event(live: Live) -> None:
    first, second, observer = live(autocommit=False), live(), live()
    name = live.component()
    register(observer, name)
    backdate(observer, name, 1000)
    second.execute("SET statement_timeout = '20s'")
    second_pid = scalar(second, "SELECT pg_backend_pid()")

    answers: dict[str, Any] = {"first": stale_check(first)}  # holds the row lock, uncommitted

    def check_second() -> None:
        answers["second"] = stale_check(second)

    thread = threading.Thread(target=check_second)
    thread.start()
    wait_until(lambda: waiting_on_lock(observer, second_pid))
    first.commit()
    thread.join(timeout=20)

    assert name in answers["first"]["silent"]
    assert name not in answers["second"]["silent"]
    assert len(events(observer, SILENT, name)) == 1


# --------------------------------------------------------------------------- v_queue_health


@pytest.mark.parametrize(
    ("age", "hint"),
    [(1, "fresh"), (15, "fresh"), (25, "late"), (290, "late"), (310, "stale"), (None, "never")],
)
def test_status_hint_follows_the_age_of_the_last_beat(db: Conn, age: int | None, hint: str) -> None:
    name = unique("w-")
    register(db, name, cadence=10)  # fresh up to 20 s, stale past the 300 s threshold
    if age is not None:
        beat(db, name)
        backdate(db, name, age)

    row = health(db, name)

    assert row["status_hint"] == hint
    assert row["cadence_seconds"] == 10 and row["stale_threshold_seconds"] == 300
    if age is not None:
        assert row["heartbeat_age_seconds"] == pytest.approx(age, abs=5)


def test_deregistered_components_leave_the_view_but_stay_in_the_table(db: Conn) -> None:
    name = unique("w-")
    deregister(db, name, register(db, name)["epoch"])

    assert (
        db.execute("SELECT 1 FROM v_queue_health WHERE component = %s", (name,)).fetchone() is None
    )
    assert scalar(db, "SELECT count(*) FROM queue_heartbeat WHERE component = %s", (name,)) == 1


def _enqueue(conn: Conn, queue: str, n: int = 1) -> list[int]:
    ids = []
    for _ in range(n):
        answer = scalar(conn, "SELECT fn_job_enqueue(kind => 'hb.test', queue => %s)", (queue,))
        ids.append(int(answer["job_id"]))
    return ids


def _claim(conn: Conn, queue: str, worker: str, n: int) -> list[int]:
    answer = scalar(
        conn,
        "SELECT fn_job_claim(worker => %s, queues => ARRAY[%s], batch => %s)",
        (worker, queue, n),
    )
    return [int(job["job_id"]) for job in answer["jobs"]]


def test_a_worker_row_counts_its_own_in_progress_and_expired_leases(db: Conn) -> None:
    set_flag(db, SUBSTRATE, True)
    worker, other, queue = unique("w-"), unique("o-"), unique("q-")
    register(db, worker, metadata={"queues": [queue]})
    register(db, other, kind="other")
    _enqueue(db, queue, 4)
    mine = _claim(db, queue, worker, 2)
    _claim(db, queue, unique("someone-"), 1)
    db.execute(
        "UPDATE job_queue SET lease_expires_at = clock_timestamp() - interval '1 minute'"
        " WHERE id = %s",
        (mine[0],),
    )

    row = health(db, worker)
    totals = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE lease_expires_at < clock_timestamp())"
        " FROM job_queue WHERE status = 'in_progress'"
    ).fetchone()

    assert (row["in_progress_count"], row["expired_lease_count"]) == (2, 1)
    assert row["backlog_count"] == 1
    other_row = health(db, other)
    assert (other_row["in_progress_count"], other_row["expired_lease_count"]) == totals


def test_a_workers_backlog_and_dead_letters_cover_only_its_queues(db: Conn) -> None:
    set_flag(db, SUBSTRATE, True)
    worker, mine, theirs = unique("w-"), unique("q-"), unique("q-")
    register(db, worker, metadata={"queues": [mine]})
    [dead] = _enqueue(db, mine)
    [job] = scalar(db, "SELECT fn_job_claim(worker => 'x', queues => ARRAY[%s])", (mine,))["jobs"]
    db.execute(
        "SELECT fn_job_fail_permanent(job_id => %s, lease_token => %s, error => 'boom')",
        (dead, job["lease_token"]),
    )
    _enqueue(db, mine, 2)
    _enqueue(db, theirs, 3)
    db.execute(
        "UPDATE job_queue SET run_at = now() - interval '90 seconds' WHERE queue = %s", (mine,)
    )

    row = health(db, worker)

    assert row["backlog_count"] == 2
    assert row["oldest_ready_age_seconds"] >= 90
    assert row["dead_letter_open_count"] == 1


def test_the_outbound_worker_row_shows_its_cursor_lag(db: Conn) -> None:
    row = health(db, "iu_outbound_default")
    expected = scalar(
        db,
        "SELECT lag_events FROM v_event_outbox_cursor_lag WHERE consumer = (SELECT consumer"
        " FROM iu_outbound_worker WHERE name = 'iu_outbound_default')",
    )

    assert row["component_kind"] == "outbound"
    assert row["cursor_lag_events"] == expected


def test_the_view_reports_the_oldest_transaction_holding_back_vacuum(
    live: Live,
) -> None:
    holder, observer = live(autocommit=False), live()
    name = live.component()
    register(observer, name)
    holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    started = scalar(holder, "SELECT now()")  # holds a snapshot, hence an xmin
    held = scalar(observer, "SELECT extract(epoch FROM clock_timestamp() - %s)", (started,))

    row = health(observer, name)
    holder.rollback()

    assert row["oldest_xmin_age_seconds"] >= float(held)
    assert 0 <= row["notification_queue_usage"] <= 1
    assert row["job_queue_dead_tuples"] >= 0


# --------------------------------------------------------------------------- outbound trigger


def test_an_outbound_tick_carries_last_run_at_into_the_heartbeat(db: Conn) -> None:
    answer = scalar(db, "SELECT fn_iu_outbound_tick(name => 'iu_outbound_default', batch => 1)")

    assert answer["ok"] is True
    last_run_at, last_beat_at = db.execute(
        "SELECT w.last_run_at, h.last_beat_at FROM iu_outbound_worker AS w"
        " JOIN queue_heartbeat AS h ON h.component = w.name WHERE w.name = 'iu_outbound_default'"
    ).fetchone() or (None, None)
    assert last_beat_at == last_run_at is not None
    assert health(db, "iu_outbound_default")["status_hint"] == "fresh"


def test_a_backdated_last_run_at_is_carried_too_and_goes_silent(db: Conn) -> None:
    scalar(db, "SELECT fn_iu_outbound_tick(name => 'iu_outbound_default', batch => 1)")
    stale_check(db)  # closes an episode left open by earlier committed checks, if any
    db.execute(
        "UPDATE iu_outbound_worker SET last_run_at = clock_timestamp() - interval '1 hour'"
        " WHERE name = 'iu_outbound_default'"
    )

    assert health(db, "iu_outbound_default")["status_hint"] == "stale"
    assert "iu_outbound_default" in stale_check(db)["silent"]


def test_the_outbound_heartbeat_is_the_first_row_and_takes_the_workers_cadence(db: Conn) -> None:
    db.execute(
        "UPDATE iu_outbound_worker SET cadence_seconds = 30 WHERE name = 'iu_outbound_default'"
    )
    scalar(db, "SELECT fn_iu_outbound_tick(name => 'iu_outbound_default', batch => 1)")

    kind, cadence = db.execute(
        "SELECT component_kind, cadence_seconds FROM queue_heartbeat"
        " WHERE component = 'iu_outbound_default'"
    ).fetchone() or (None, None)
    assert (kind, cadence) == ("outbound", 30)


def test_nothing_is_carried_while_heartbeats_are_disabled(db: Conn) -> None:
    before = scalar(
        db, "SELECT last_beat_at FROM queue_heartbeat WHERE component = 'iu_outbound_default'"
    )
    set_flag(db, HEARTBEAT, False)

    scalar(db, "SELECT fn_iu_outbound_tick(name => 'iu_outbound_default', batch => 1)")

    after = scalar(
        db, "SELECT last_beat_at FROM queue_heartbeat WHERE component = 'iu_outbound_default'"
    )
    assert after == before


# --------------------------------------------------------------------------- receivers


def _go_silent(conn: Conn, name: str) -> None:
    register(conn, name)
    backdate(conn, name, 1000)
    assert name in stale_check(conn)["silent"]


def test_the_watchdog_records_one_alert_per_event_even_when_run_again(live: Live) -> None:
    conn = live()
    name = live.component()
    _go_silent(conn, name)

    drain(conn, "fn_watchdog_receive")
    drain(conn, "fn_watchdog_receive")
    conn.execute(
        "UPDATE event_outbox_cursor SET last_txid = '0', last_id = 0 WHERE consumer = 'watchdog'"
    )
    drain(conn, "fn_watchdog_receive")  # reads the whole outbox again

    silent_event = scalar(
        conn,
        "SELECT id FROM event_outbox WHERE event_type = %s AND payload->>'component' = %s",
        (SILENT, name),
    )
    assert alerts(conn, name) == [("silent", silent_event)]
    lag = scalar(
        conn, "SELECT lag_events FROM v_event_outbox_cursor_lag WHERE consumer = 'watchdog'"
    )
    assert lag == 0


def test_the_watchdog_records_recovery_and_an_alert_is_acknowledged_once(live: Live) -> None:
    conn = live()
    name = live.component()
    _go_silent(conn, name)
    beat(conn, name)
    stale_check(conn)
    drain(conn, "fn_watchdog_receive")
    alert_id = scalar(
        conn,
        "SELECT id FROM v_queue_watchdog_alert_open WHERE component = %s AND alert = 'silent'",
        (name,),
    )

    first = scalar(conn, "SELECT fn_watchdog_acknowledge(%s, 'alice')", (alert_id,))
    second = scalar(conn, "SELECT fn_watchdog_acknowledge(%s, 'bob')", (alert_id,))

    assert [a for a, _ in alerts(conn, name)] == ["silent", "recovered"]
    assert first["ok"] is True and first["already"] is False
    assert second["already"] is True and second["acknowledged_by"] == "alice"
    assert scalar(conn, "SELECT fn_watchdog_acknowledge(-1)") == {
        "refused": True,
        "reason": "not_found",
        "alert_id": -1,
    }


def test_red_zones_list_a_silent_component_until_it_recovers(live: Live) -> None:
    conn = live()
    name = live.component()
    _go_silent(conn, name)

    drain(conn, "fn_red_zones_receive")
    listed = conn.execute(
        "SELECT component FROM v_red_zones WHERE component = %s", (name,)
    ).fetchall()
    beat(conn, name)
    stale_check(conn)
    drain(conn, "fn_red_zones_receive")

    assert listed == [(name,)]
    assert (
        conn.execute("SELECT 1 FROM v_red_zones WHERE component = %s", (name,)).fetchone() is None
    )


def test_red_zones_end_in_the_same_state_when_events_are_read_again(live: Live) -> None:
    conn = live()
    silent, recovered = live.component(), live.component()
    _go_silent(conn, silent)
    _go_silent(conn, recovered)
    beat(conn, recovered)
    stale_check(conn)
    drain(conn, "fn_red_zones_receive")
    before = conn.execute(
        "SELECT component, event_id FROM queue_red_zone WHERE component = ANY(%s) ORDER BY 1",
        ([silent, recovered],),
    ).fetchall()

    conn.execute(
        "UPDATE event_outbox_cursor SET last_txid = '0', last_id = 0 WHERE consumer = 'red_zones'"
    )
    drain(conn, "fn_red_zones_receive")

    after = conn.execute(
        "SELECT component, event_id FROM queue_red_zone WHERE component = ANY(%s) ORDER BY 1",
        ([silent, recovered],),
    ).fetchall()
    assert [c for c, _ in before] == [silent]
    assert after == before


@pytest.mark.parametrize("receiver", ["fn_watchdog_receive", "fn_red_zones_receive"])
def test_a_receiver_running_twice_at_once_applies_each_event_once(
    live: Live, receiver: str
) -> None:
    first, second, observer = live(autocommit=False), live(), live()
    name = live.component()
    drain(observer, receiver)  # start from a caught-up cursor
    _go_silent(observer, name)
    second.execute("SET statement_timeout = '20s'")
    second_pid = scalar(second, "SELECT pg_backend_pid()")

    answers: dict[str, Any] = {"first": scalar(first, f"SELECT {receiver}(batch => 10000)")}

    def receive_second() -> None:
        answers["second"] = scalar(second, f"SELECT {receiver}(batch => 10000)")

    thread = threading.Thread(target=receive_second)
    thread.start()
    wait_until(lambda: waiting_on_lock(observer, second_pid))
    first.commit()
    thread.join(timeout=20)

    assert answers["first"]["received"] >= 1
    assert answers["second"]["received"] == 0  # read after the first one's advance
    if receiver == "fn_watchdog_receive":
        assert len(alerts(observer, name)) == 1
    else:
        assert (
            scalar(observer, "SELECT count(*) FROM v_red_zones WHERE component = %s", (name,)) == 1
        )


# --------------------------------------------------------------------------- NOTIFY bridge


@pytest.fixture
def bridge(live: Live) -> Iterator[tuple[Conn, Conn]]:
    """(listener, admin): LISTEN on conveyor_jobs; the substrate is on; the bridge flag restored."""
    admin, listener = live(), live()
    old = {
        key: scalar(admin, "SELECT value FROM dot_config WHERE key = %s", (key,))
        for key in (SUBSTRATE, BRIDGE)
    }
    set_flag(admin, SUBSTRATE, True)
    listener.execute(f"LISTEN {CHANNEL}")
    yield listener, admin
    for key, value in old.items():
        set_flag(admin, key, value)


def received_before_sentinel(listener: Conn, admin: Conn) -> list[str]:
    """Notifications delivered before a sentinel sent now: NOTIFY is delivered in commit order, so
    anything committed earlier arrives first (no waiting for an absence)."""
    sentinel = unique("sentinel-")
    admin.execute("SELECT pg_notify(%s, %s)", (CHANNEL, sentinel))
    got: list[str] = []
    for notification in listener.notifies(timeout=10):
        if notification.payload == sentinel:
            return got
        got.append(notification.payload)
    raise AssertionError("the sentinel notification never arrived")


def _enqueue_many(conn: Conn, queue: str, n: int) -> dict[str, Any]:
    return dict(
        scalar(
            conn,
            "SELECT fn_job_enqueue_many(%s)",
            (
                Jsonb(
                    [{"kind": "hb.bridge", "queue": queue, "payload": {"i": i}} for i in range(n)]
                ),
            ),
        )
    )


def test_with_the_bridge_off_an_enqueue_sends_no_notification(
    bridge: tuple[Conn, Conn],
) -> None:
    listener, admin = bridge
    set_flag(admin, BRIDGE, False)

    assert _enqueue_many(admin, unique("q-"), 10)["created"] == 10
    assert received_before_sentinel(listener, admin) == []


def test_the_bridge_sends_one_notification_for_1000_jobs_and_only_at_commit(
    bridge: tuple[Conn, Conn], live: Live
) -> None:
    listener, admin = bridge
    set_flag(admin, BRIDGE, True)
    writer, queue = live(autocommit=False), unique("q-")

    assert _enqueue_many(writer, queue, 1000)["created"] == 1000
    before_commit = received_before_sentinel(listener, admin)
    writer.commit()
    after_commit = received_before_sentinel(listener, admin)

    assert before_commit == []
    assert after_commit == [queue]


def test_the_bridge_sends_nothing_for_a_rolled_back_enqueue(
    bridge: tuple[Conn, Conn], live: Live
) -> None:
    listener, admin = bridge
    set_flag(admin, BRIDGE, True)
    writer = live(autocommit=False)

    _enqueue_many(writer, unique("q-"), 10)
    writer.rollback()

    assert received_before_sentinel(listener, admin) == []


def test_the_bridge_is_silent_for_jobs_scheduled_later(bridge: tuple[Conn, Conn]) -> None:
    listener, admin = bridge
    set_flag(admin, BRIDGE, True)

    scalar(
        admin,
        "SELECT fn_job_enqueue(kind => 'hb.later', queue => %s,"
        " run_at => now() + interval '1 hour')",
        (unique("q-"),),
    )

    assert received_before_sentinel(listener, admin) == []


def test_with_the_bridge_on_a_1mb_payload_and_a_63_byte_queue_name_still_enqueue(
    bridge: tuple[Conn, Conn], live: Live
) -> None:
    listener, admin = bridge
    set_flag(admin, BRIDGE, True)
    writer = live(autocommit=False)
    queue = ("q" + uuid.uuid4().hex + "x" * 63)[:63]
    # Raise the payload limit inside the writer's transaction only (set back before commit).
    limit = scalar(writer, "SELECT value FROM dot_config WHERE key = 'queue.payload.max_bytes'")
    set_flag(writer, "queue.payload.max_bytes", 2_000_000)

    answer = scalar(
        writer,
        "SELECT fn_job_enqueue(kind => 'hb.big', queue => %s, payload => %s)",
        (queue, Jsonb({"blob": "x" * 1_000_000})),
    )
    set_flag(writer, "queue.payload.max_bytes", limit)
    writer.commit()

    assert answer["ok"] is True
    assert received_before_sentinel(listener, admin) == [queue]


def test_the_bridge_payload_stays_far_below_the_notify_limit(
    bridge: tuple[Conn, Conn],
) -> None:
    listener, admin = bridge
    set_flag(admin, BRIDGE, True)
    queues = [(f"q{i:03d}" + uuid.uuid4().hex + "x" * 63)[:63] for i in range(100)]

    scalar(
        admin,
        "SELECT fn_job_enqueue_many(%s)",
        (Jsonb([{"kind": "hb.many", "queue": q} for q in queues]),),
    )

    [payload] = received_before_sentinel(listener, admin)
    assert len(payload.encode()) < 1000
    assert payload.endswith(",*")
    assert payload.split(",")[:-1] == sorted(queues)[: len(payload.split(",")) - 1]
