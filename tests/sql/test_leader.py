"""Phase 3, orchestrator leadership through the leader row (term + expiry, no advisory locks):
acquire, renew, takeover after expiry, fencing of a deposed leader, resignation, and two
acquirers at once. Expiry is simulated by backdating expires_at (no sleeping). One-session tests
run in the rolled-back `db` transaction on a fresh leader row; races use two connections.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from helpers import apply_phases, scalar, wait_until

Connect = Callable[..., psycopg.Connection[Any]]
Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module", autouse=True)
def phase3(dsn: str) -> None:
    """Apply phases 2 and 3 to this module's database (0 and 1 come from the template)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_phases(conn, (2, 3))


@pytest.fixture
def fresh(db: Conn) -> Conn:
    """The `db` transaction with no leader row yet."""
    db.execute("DELETE FROM orchestrator_leader")
    return db


@pytest.fixture
def committed(connect: Connect) -> Iterator[Connect]:
    """Autocommit connections on a committed, empty leader row (emptied again afterwards)."""
    admin = connect()
    admin.execute("DELETE FROM orchestrator_leader")
    yield connect
    admin.execute("DELETE FROM orchestrator_leader")


def acquire(conn: Conn, candidate: str, lease_seconds: int | None = None) -> dict[str, Any]:
    return dict(
        scalar(
            conn,
            "SELECT fn_orchestrator_acquire(candidate => %s, lease_seconds => %s)",
            (candidate, lease_seconds),
        )
    )


def check_answer(conn: Conn, candidate: str, term: int) -> dict[str, Any]:
    return dict(
        scalar(conn, "SELECT fn_orchestrator_check(candidate => %s, term => %s)", (candidate, term))
    )


def check(conn: Conn, candidate: str, term: int) -> bool:
    return bool(check_answer(conn, candidate, term)["leader"])


def resign(conn: Conn, candidate: str, term: int) -> dict[str, Any]:
    return dict(
        scalar(
            conn, "SELECT fn_orchestrator_resign(candidate => %s, term => %s)", (candidate, term)
        )
    )


def expire(conn: Conn) -> None:
    conn.execute(
        "UPDATE orchestrator_leader SET expires_at = clock_timestamp() - interval '1 second'"
    )


def test_the_first_candidate_becomes_leader_with_term_1(fresh: Conn) -> None:
    answer = acquire(fresh, "a")

    assert answer["ok"] is True and answer["leader"] is True
    assert (answer["term"], answer["holder"]) == (1, "a")
    assert check(fresh, "a", 1) is True


def test_the_holder_renews_under_the_same_term_and_pushes_the_expiry_out(fresh: Conn) -> None:
    first = acquire(fresh, "a")

    second = acquire(fresh, "a")

    assert second["leader"] is True and second["term"] == first["term"]
    assert second["expires_at"] > first["expires_at"]


def test_another_candidate_is_not_leader_while_the_lease_runs(fresh: Conn) -> None:
    acquire(fresh, "a")

    answer = acquire(fresh, "b")

    assert answer["leader"] is False and answer["holder"] == "a" and answer["term"] == 1
    assert check(fresh, "b", 1) is False


def test_after_expiry_another_candidate_takes_over_with_the_next_term(fresh: Conn) -> None:
    acquire(fresh, "a")
    expire(fresh)

    answer = acquire(fresh, "b")

    assert (answer["leader"], answer["holder"], answer["term"]) == (True, "b", 2)


def test_a_deposed_leader_fails_its_check_and_cannot_renew(fresh: Conn) -> None:
    old = acquire(fresh, "a")
    expire(fresh)
    new = acquire(fresh, "b")

    assert check(fresh, "a", old["term"]) is False
    assert check(fresh, "b", new["term"]) is True
    again = acquire(fresh, "a")
    assert again["leader"] is False and again["holder"] == "b"


def test_a_check_fails_once_the_lease_has_run_out_even_without_a_takeover(fresh: Conn) -> None:
    term = acquire(fresh, "a")["term"]
    expire(fresh)

    assert check(fresh, "a", term) is False


def test_a_holder_whose_lease_lapsed_comes_back_under_a_new_term(fresh: Conn) -> None:
    first = acquire(fresh, "a")
    expire(fresh)

    second = acquire(fresh, "a")

    assert second["leader"] is True and second["term"] == first["term"] + 1
    assert check(fresh, "a", first["term"]) is False


def test_resigning_lets_another_candidate_take_over_at_once(fresh: Conn) -> None:
    term = acquire(fresh, "a")["term"]

    answer = resign(fresh, "a", term)

    assert answer == {"ok": True, "resigned": True, "term": term}
    assert check(fresh, "a", term) is False
    taken = acquire(fresh, "b")
    assert (taken["leader"], taken["term"]) == (True, term + 1)


def test_only_the_holder_of_the_term_can_resign(fresh: Conn) -> None:
    term = acquire(fresh, "a")["term"]

    assert resign(fresh, "b", term)["resigned"] is False
    assert resign(fresh, "a", term + 1)["resigned"] is False
    assert check(fresh, "a", term) is True


def test_a_failed_check_says_why_the_candidate_is_no_longer_leader(fresh: Conn) -> None:
    first = acquire(fresh, "a")
    assert check_answer(fresh, "a", 1) == {
        "ok": True,
        "leader": True,
        "term": 1,
        "expires_at": first["expires_at"],
    }
    assert check_answer(fresh, "b", 1)["reason"] == "not_holder"
    expire(fresh)
    assert check_answer(fresh, "a", 1)["reason"] == "lease_expired"
    acquire(fresh, "b")
    assert check_answer(fresh, "a", 1) == {
        "ok": True,
        "leader": False,
        "reason": "deposed",
        "term": 2,
        "holder": "b",
    }
    resign(fresh, "b", 2)
    assert check_answer(fresh, "b", 2)["reason"] == "resigned"


def test_the_lease_defaults_to_the_configured_seconds(fresh: Conn) -> None:
    acquire(fresh, "a")
    default = scalar(fresh, "SELECT expires_at - acquired_at FROM orchestrator_leader")
    acquire(fresh, "a", lease_seconds=120)
    renewed = scalar(fresh, "SELECT expires_at - clock_timestamp() FROM orchestrator_leader")

    assert default.total_seconds() == 15  # queue.orchestrator.leader_lease_seconds
    assert 100 < renewed.total_seconds() <= 120


@pytest.mark.parametrize(
    ("candidate", "lease_seconds", "named"),
    [
        ("", None, "candidate"),
        ("a\x01", None, "candidate"),
        ("a", 0, "lease_seconds"),
        ("a", 3601, "lease_seconds"),
    ],
)
def test_acquire_rejects_bad_input_naming_the_argument(
    fresh: Conn, candidate: str, lease_seconds: int | None, named: str
) -> None:
    with pytest.raises(errors.InvalidParameterValue, match=named):
        acquire(fresh, candidate, lease_seconds)


def test_a_worker_role_can_lead(fresh: Conn) -> None:
    fresh.execute("SET ROLE conveyor_worker")

    term = acquire(fresh, "a")["term"]

    assert check(fresh, "a", term) is True
    assert resign(fresh, "a", term)["resigned"] is True
    with pytest.raises(errors.InsufficientPrivilege):
        fresh.execute("SELECT * FROM orchestrator_leader")


def test_v_orchestrator_leader_shows_the_holder_and_whether_its_lease_is_active(
    fresh: Conn,
) -> None:
    acquire(fresh, "a")
    row = fresh.execute("SELECT holder, term, active FROM v_orchestrator_leader").fetchone()
    expire(fresh)

    assert row == ("a", 1, True)
    assert scalar(fresh, "SELECT active FROM v_orchestrator_leader") is False


def test_an_acquire_waiting_on_a_concurrent_one_sees_its_result(committed: Connect) -> None:
    first, second, observer = committed(autocommit=False), committed(), committed()
    second.execute("SET statement_timeout = '20s'")
    second_pid = scalar(second, "SELECT pg_backend_pid()")
    answers: dict[str, Any] = {"first": acquire(first, "a")}  # holds the row lock, uncommitted

    def acquire_second() -> None:
        answers["second"] = acquire(second, "b")

    thread = threading.Thread(target=acquire_second)
    thread.start()
    wait_until(
        lambda: scalar(
            observer,
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            (second_pid,),
        )
    )
    first.commit()
    thread.join(timeout=20)

    assert answers["first"]["leader"] is True
    assert answers["second"]["leader"] is False and answers["second"]["holder"] == "a"


def test_candidates_racing_on_an_expired_lease_elect_exactly_one_leader(
    committed: Connect,
) -> None:
    admin = committed()
    acquire(admin, "old")
    expire(admin)
    connections = [committed() for _ in range(4)]
    barrier = threading.Barrier(len(connections))
    answers: dict[int, dict[str, Any]] = {}

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = acquire(connections[i], f"c{i}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(connections))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    leaders = [i for i, answer in answers.items() if answer["leader"]]
    assert len(answers) == 4 and len(leaders) == 1
    assert {answer["term"] for answer in answers.values()} == {2}
    assert {answer["holder"] for answer in answers.values()} == {f"c{leaders[0]}"}
