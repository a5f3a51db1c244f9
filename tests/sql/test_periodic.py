"""Phase 3, periodic (cron) jobs: fn_cron_next against a table of expressions, validation of bad
expressions, fn_periodic_register / _unregister, and fn_periodic_enqueue_due: each slot enqueued
once (called twice, or from two connections), and the missed-slot policies after simulated
downtime (last_slot backdated; no sleeping). One-session tests run in the rolled-back `db`
transaction, where now() stands still; the two-connection test uses committed rows under a name
of its own, removed afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from helpers import apply_phases, scalar, set_flag, unique

Connect = Callable[..., psycopg.Connection[Any]]
Conn = psycopg.Connection[Any]

SUBSTRATE = "queue.job_substrate.enabled"
POLICY = "queue.periodic.missed_policy"


@pytest.fixture(scope="module", autouse=True)
def phase3(dsn: str) -> None:
    """Apply phases 2 and 3 to this module's database (0 and 1 come from the template)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2, 3))


def cron_next(conn: Conn, cron: str, after: str) -> datetime | None:
    """fn_cron_next as a naive UTC datetime (None when it never fires)."""
    value = scalar(conn, "SELECT fn_cron_next(%s, %s::timestamptz)", (cron, after))
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def register(conn: Conn, name: str, cron: str, **options: Any) -> dict[str, Any]:
    names = ("payload", "queue", "priority")
    args = "".join(f", {key} => %({key})s" for key in names if key in options)
    params = {"kind": "periodic.test", **options, "name": name, "cron": cron}
    if "payload" in params:
        params["payload"] = Jsonb(params["payload"])
    call = "SELECT fn_periodic_register(name => %(name)s, cron => %(cron)s, kind => %(kind)s"
    return dict(scalar(conn, f"{call}{args})", params))


def enqueue_due(conn: Conn) -> dict[str, Any]:
    return dict(scalar(conn, "SELECT fn_periodic_enqueue_due()"))


def mine(answer: dict[str, Any], name: str, key: str = "enqueued") -> list[dict[str, Any]]:
    return [entry for entry in answer[key] if entry["name"] == name]


def set_last_slot(conn: Conn, name: str, expression: str) -> None:
    conn.execute(f"UPDATE job_periodic SET last_slot = {expression} WHERE name = %s", (name,))


def at(value: str) -> datetime:
    """A timestamp from an answer (JSON text) as an aware datetime."""
    return datetime.fromisoformat(value)


def key(name: str, slot: datetime) -> str:
    return f"periodic:{name}:{slot.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def keys(conn: Conn, name: str) -> list[str]:
    rows = conn.execute(
        "SELECT idempotency_key FROM job_queue WHERE idempotency_key LIKE %s ORDER BY id",
        (f"periodic:{name}:%",),
    ).fetchall()
    return [str(r[0]) for r in rows]


# --------------------------------------------------------------------------- fn_cron_next

CASES = [
    # every minute, steps, ranges with steps, lists
    ("* * * * *", "2024-01-01 00:00:30Z", "2024-01-01 00:01:00"),
    ("*/15 * * * *", "2024-01-01 10:45:00Z", "2024-01-01 11:00:00"),
    ("5-10/2 * * * *", "2024-01-01 00:07:00Z", "2024-01-01 00:09:00"),
    ("15,45 */6 * * *", "2024-01-01 06:45:00Z", "2024-01-01 12:15:00"),
    ("0 8-18/4 * * *", "2024-01-01 12:00:00Z", "2024-01-01 16:00:00"),
    # weekdays by number and by name; 7 is Sunday
    ("0 9 * * 1-5", "2024-01-05 09:00:00Z", "2024-01-08 09:00:00"),
    ("0 9 * * mon-fri", "2024-01-06 12:00:00Z", "2024-01-08 09:00:00"),
    ("0 0 * * 7", "2024-01-01 00:00:00Z", "2024-01-07 00:00:00"),
    # month ends: months without day 31 or 30 are skipped; year rollover
    ("0 0 31 * *", "2024-01-31 00:00:00Z", "2024-03-31 00:00:00"),
    ("0 0 30 * *", "2024-01-31 00:00:00Z", "2024-03-30 00:00:00"),
    ("59 23 31 12 *", "2024-01-01 00:00:00Z", "2024-12-31 23:59:00"),
    ("0 0 1 jan,jul *", "2024-02-01 00:00:00Z", "2024-07-01 00:00:00"),
    ("0 0 * 2 *", "2023-02-28 00:00:00Z", "2024-02-01 00:00:00"),
    # Feb 29: the next leap year, across 2100 (not a leap year)
    ("0 0 29 2 *", "2024-03-01 00:00:00Z", "2028-02-29 00:00:00"),
    ("0 0 29 2 *", "2096-03-01 00:00:00Z", "2104-02-29 00:00:00"),
    # both day fields restricted: either matches (2024-01-01 is a Monday)
    ("0 12 1 * 1", "2024-01-01 12:00:00Z", "2024-01-08 12:00:00"),
    ("0 0 13 * 5", "2024-09-01 00:00:00Z", "2024-09-06 00:00:00"),
    # a day field beginning with * counts as unrestricted: both must match
    ("0 0 */10 * 0", "2024-01-01 00:00:00Z", "2024-01-21 00:00:00"),
    ("0 0 1 * */2", "2024-01-01 00:00:00Z", "2024-02-01 00:00:00"),
    # macros
    ("@hourly", "2024-01-01 10:59:59Z", "2024-01-01 11:00:00"),
    ("@daily", "2024-12-31 23:59:00Z", "2025-01-01 00:00:00"),
    ("@weekly", "2024-01-01 00:00:00Z", "2024-01-07 00:00:00"),
    ("@monthly", "2024-01-31 23:59:00Z", "2024-02-01 00:00:00"),
    ("@yearly", "2024-06-01 00:00:00Z", "2025-01-01 00:00:00"),
]


@pytest.mark.parametrize(("cron", "after", "expected"), CASES)
def test_cron_next_names_the_expected_time(db: Conn, cron: str, after: str, expected: str) -> None:
    assert cron_next(db, cron, after) == datetime.fromisoformat(expected)


def test_cron_next_is_in_utc_whatever_the_session_time_zone(db: Conn) -> None:
    db.execute("SET TimeZone = 'America/New_York'")

    assert cron_next(db, "30 2 * * *", "2024-03-10 01:00:00Z") == datetime(2024, 3, 10, 2, 30)


def test_cron_next_is_null_for_an_expression_that_never_fires(db: Conn) -> None:
    assert cron_next(db, "0 0 31 2 *", "2024-01-01 00:00:00Z") is None


@pytest.mark.parametrize(
    ("cron", "named"),
    [
        ("60 * * * *", "minute field '60'"),
        ("* 24 * * *", "hour field '24'"),
        ("* * 0 * *", "day-of-month field '0'"),
        ("* * 32 * *", "day-of-month field '32'"),
        ("* * * 13 *", "month field '13'"),
        ("* * * foo *", "month field 'foo'"),
        ("* * * * 8", "day-of-week field '8'"),
        ("* * * * mon-fry", "day-of-week field 'mon-fry'"),
        ("*/0 * * * *", "minute field '\\*/0'"),
        ("10-5 * * * *", "minute field '10-5'"),
        ("1,,2 * * * *", "minute field ''"),
        ("* * * *", "has 4 fields"),
        ("* * * * * *", "has 6 fields"),
        ("@reboot", "macro '@reboot'"),
        ("", "required"),
    ],
)
def test_a_bad_cron_expression_is_rejected_naming_the_field(
    db: Conn, cron: str, named: str
) -> None:
    with pytest.raises(errors.InvalidParameterValue, match=named):
        scalar(db, "SELECT fn_cron_next(%s, now())", (cron,))


# --------------------------------------------------------------------------- register


def test_register_answers_the_next_slot_and_creates_the_row(db: Conn) -> None:
    name = unique("p.")

    answer = register(db, name, "@hourly", payload={"report": "x"}, queue="reports", priority=5)

    assert answer["ok"] is True and answer["created"] is True
    row = db.execute(
        "SELECT cron, kind, queue, payload, priority, enabled, last_slot FROM job_periodic"
        " WHERE name = %s",
        (name,),
    ).fetchone()
    assert row == ("@hourly", "periodic.test", "reports", {"report": "x"}, 5, True, None)
    assert scalar(
        db,
        "SELECT next_slot = %s::timestamptz FROM v_job_periodic WHERE name = %s",
        (answer["next_slot"], name),
    )


def test_register_rejects_a_bad_cron_naming_the_field_and_value(db: Conn) -> None:
    with pytest.raises(
        errors.InvalidParameterValue, match=r"fn_periodic_register: .* hour field '25'"
    ):
        register(db, unique("p."), "0 25 * * *")


def test_register_rejects_a_cron_that_never_fires(db: Conn) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="never fires"):
        register(db, unique("p."), "0 0 30 2 *")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"kind": "bad kind!"}, "kind"),
        ({"queue": "Bad Queue"}, "queue"),
        ({"priority": 5000}, "priority"),
        ({"payload": [1, 2]}, "payload"),
    ],
)
def test_register_validates_the_job_it_will_enqueue(
    db: Conn, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(errors.InvalidParameterValue, match=named):
        register(db, unique("p."), "@daily", **options)


def test_register_rejects_a_bad_name(db: Conn) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="name"):
        register(db, "no spaces please", "@daily")


def test_registering_again_replaces_the_schedule_and_keeps_last_slot(db: Conn) -> None:
    name = unique("p.")
    register(db, name, "@hourly")
    set_last_slot(db, name, "'2024-01-01 10:00:00Z'")
    db.execute("UPDATE job_periodic SET enabled = false WHERE name = %s", (name,))

    answer = register(db, name, "@daily", kind="periodic.other")

    assert answer["created"] is False
    assert at(answer["next_slot"]) == datetime(2024, 1, 2, tzinfo=UTC)
    row = db.execute(
        "SELECT cron, kind, enabled, last_slot = '2024-01-01 10:00:00Z' FROM job_periodic"
        " WHERE name = %s",
        (name,),
    ).fetchone()
    assert row == ("@daily", "periodic.other", True, True)


def test_unregister_removes_the_periodic_job(db: Conn) -> None:
    name = unique("p.")
    register(db, name, "@daily")

    assert scalar(db, "SELECT fn_periodic_unregister(%s)", (name,)) == {
        "ok": True,
        "name": name,
        "removed": True,
    }
    assert scalar(db, "SELECT fn_periodic_unregister(%s)", (name,))["removed"] is False
    assert scalar(db, "SELECT count(*) FROM job_periodic WHERE name = %s", (name,)) == 0


# --------------------------------------------------------------------------- enqueue_due


def test_enqueue_due_refuses_while_the_job_substrate_is_disabled(db: Conn) -> None:
    set_flag(db, SUBSTRATE, False)
    name = unique("p.")
    register(db, name, "* * * * *")
    set_last_slot(db, name, "now() - interval '1 hour'")

    assert enqueue_due(db) == {
        "refused": True,
        "reason": "job_substrate_disabled",
        "flag": "queue.job_substrate.enabled",
    }
    assert keys(db, name) == []


def test_nothing_is_due_before_the_first_slot_after_registration(jobs: Conn) -> None:
    name = unique("p.")
    register(jobs, name, "@yearly")

    assert mine(enqueue_due(jobs), name) == []


def test_a_due_slot_is_enqueued_once_however_often_enqueue_due_runs(jobs: Conn) -> None:
    name = unique("p.")
    register(jobs, name, "* * * * *", payload={"n": 1}, queue="periodic")
    set_last_slot(jobs, name, "date_trunc('minute', now()) - interval '1 minute'")

    first = enqueue_due(jobs)
    second = enqueue_due(jobs)

    [entry] = mine(first, name)
    assert mine(second, name) == []
    slot = scalar(jobs, "SELECT date_trunc('minute', now())")
    assert at(entry["slot"]) == slot
    assert keys(jobs, name) == [key(name, slot)]
    job = jobs.execute(
        "SELECT kind, queue, payload FROM job_queue WHERE id = %s", (entry["job_id"],)
    ).fetchone()
    assert job == ("periodic.test", "periodic", {"n": 1})
    assert scalar(jobs, "SELECT last_slot = %s FROM job_periodic WHERE name = %s", (slot, name))


def test_after_downtime_the_latest_policy_enqueues_only_the_most_recent_slot(jobs: Conn) -> None:
    name = unique("p.")
    register(jobs, name, "* * * * *")
    set_last_slot(jobs, name, "date_trunc('minute', now()) - interval '10 minutes'")

    answer = enqueue_due(jobs)

    now = scalar(jobs, "SELECT date_trunc('minute', now())")
    assert [at(e["slot"]) for e in mine(answer, name)] == [now]
    [skipped] = mine(answer, name, "skipped")
    assert skipped["reason"] == "missed"
    assert at(skipped["first_missed"]) == now - timedelta(minutes=9)
    assert at(skipped["last_missed"]) == now - timedelta(minutes=1)


def test_after_downtime_the_all_policy_enqueues_each_missed_slot_in_order(jobs: Conn) -> None:
    set_flag(jobs, POLICY, "all")
    name = unique("p.")
    register(jobs, name, "*/2 * * * *")
    # Down for 10 minutes: last_slot 10 minutes before the latest slot of the */2 grid, so
    # exactly the 5 slots after it are due.
    set_last_slot(
        jobs,
        name,
        "date_trunc('hour', now()) + (floor(extract(minute FROM now()) / 2) * 2 - 10)"
        " * interval '1 minute'",
    )
    last = scalar(jobs, "SELECT last_slot FROM job_periodic WHERE name = %s", (name,))

    answer = enqueue_due(jobs)

    expected = [last + timedelta(minutes=2 * i) for i in range(1, 6)]
    assert [at(e["slot"]) for e in mine(answer, name)] == expected
    assert mine(answer, name, "skipped") == []
    assert keys(jobs, name) == [key(name, s) for s in expected]


def test_the_all_policy_caps_a_long_downtime_at_the_100_most_recent_slots(jobs: Conn) -> None:
    set_flag(jobs, POLICY, "all")
    name = unique("p.")
    register(jobs, name, "* * * * *")
    set_last_slot(jobs, name, "date_trunc('minute', now()) - interval '1000 minutes'")

    answer = enqueue_due(jobs)

    now = scalar(jobs, "SELECT date_trunc('minute', now())")
    slots = [at(e["slot"]) for e in mine(answer, name)]
    assert slots == [now - timedelta(minutes=99 - i) for i in range(100)]
    [skipped] = mine(answer, name, "skipped")
    assert skipped["reason"] == "over_cap"
    assert at(skipped["first_missed"]) == now - timedelta(minutes=999)
    assert at(skipped["last_missed"]) == now - timedelta(minutes=100)


def test_a_slot_whose_job_is_still_live_is_reported_not_enqueued_again(jobs: Conn) -> None:
    name = unique("p.")
    register(jobs, name, "* * * * *")
    set_last_slot(jobs, name, "date_trunc('minute', now()) - interval '1 minute'")
    [first] = mine(enqueue_due(jobs), name)
    set_last_slot(jobs, name, "date_trunc('minute', now()) - interval '1 minute'")  # by hand

    answer = enqueue_due(jobs)

    assert mine(answer, name) == []
    [skipped] = mine(answer, name, "skipped")
    assert skipped["reason"] == "already_enqueued" and skipped["job_id"] == first["job_id"]
    assert len(keys(jobs, name)) == 1


def test_a_row_whose_job_no_longer_validates_is_reported_and_the_others_go_on(
    jobs: Conn,
) -> None:
    bad, good = unique("p.a"), unique("p.b")
    register(jobs, bad, "* * * * *", payload={"blob": "x" * 500})
    register(jobs, good, "* * * * *")
    for name in (bad, good):
        set_last_slot(jobs, name, "date_trunc('minute', now()) - interval '1 minute'")
    set_flag(jobs, "queue.payload.max_bytes", 100)  # lowered after registration

    answer = enqueue_due(jobs)

    [skipped] = mine(answer, bad, "skipped")
    assert skipped["reason"] == "invalid" and "payload" in skipped["error"]
    assert mine(answer, bad) == [] and keys(jobs, bad) == []
    assert scalar(
        jobs,
        "SELECT last_slot < date_trunc('minute', now()) FROM job_periodic WHERE name = %s",
        (bad,),
    )
    assert len(mine(answer, good)) == 1


def test_a_disabled_periodic_job_is_left_alone(jobs: Conn) -> None:
    name = unique("p.")
    register(jobs, name, "* * * * *")
    set_last_slot(jobs, name, "now() - interval '1 hour'")
    jobs.execute("UPDATE job_periodic SET enabled = false WHERE name = %s", (name,))

    assert mine(enqueue_due(jobs), name) == []


@pytest.fixture
def yearly(connect: Connect) -> Iterator[tuple[str, Conn]]:
    """A committed yearly periodic job, due once (its last slot was in 2000); removed after."""
    admin = connect()
    old = scalar(admin, "SELECT value FROM dot_config WHERE key = %s", (SUBSTRATE,))
    set_flag(admin, SUBSTRATE, True)
    name = unique("p.")
    register(admin, name, "0 0 1 1 *")
    set_last_slot(admin, name, "'2000-01-01 00:00:00Z'")
    yield name, admin
    admin.execute("SELECT fn_periodic_unregister(%s)", (name,))
    admin.execute("DELETE FROM job_queue WHERE idempotency_key LIKE %s", (f"periodic:{name}:%",))
    set_flag(admin, SUBSTRATE, old)


def test_two_orchestrators_at_once_enqueue_a_slot_once(
    yearly: tuple[str, Conn], connect: Connect
) -> None:
    name, observer = yearly
    first, second = connect(autocommit=False), connect()
    second.execute("SET statement_timeout = '20s'")

    by_first = enqueue_due(first)  # holds the row lock, uncommitted
    by_second_meanwhile = enqueue_due(second)  # SKIP LOCKED: leaves the row to the first
    first.commit()
    by_second_after = enqueue_due(second)

    assert len(mine(by_first, name)) == 1
    assert mine(by_second_meanwhile, name) == []
    assert mine(by_second_after, name) == []
    assert len(keys(observer, name)) == 1


def test_two_orchestrators_racing_enqueue_a_slot_once(
    yearly: tuple[str, Conn], connect: Connect
) -> None:
    name, observer = yearly
    connections = [connect() for _ in range(3)]
    barrier = threading.Barrier(len(connections))
    answers: list[dict[str, Any]] = []

    def run(conn: Conn) -> None:
        barrier.wait()
        answers.append(enqueue_due(conn))

    threads = [threading.Thread(target=run, args=(conn,)) for conn in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert len(answers) == 3
    assert sum(len(mine(answer, name)) for answer in answers) == 1
    assert len(keys(observer, name)) == 1
