"""The step functions called with plain SQL: repeats do nothing, other collections and missing
payloads are refused, the flag refuses with the pause to snooze for, and mark refuses bad input."""

from __future__ import annotations

import psycopg
import pytest

from helpers import scalar, set_flag
from pilot.support import Sql, stage


def cut(sql: Sql, record_id: int) -> dict[str, object]:
    answer = scalar(
        sql, "SELECT conveyor.fn_pilot_cut(record_id => %s, actor => 'tests')", (record_id,)
    )
    assert isinstance(answer, dict)
    return answer


def test_a_repeated_cut_answers_already_and_writes_no_second_target_row(sql: Sql) -> None:
    [record_id] = stage(sql, 1)
    first = cut(sql, record_id)
    again = cut(sql, record_id)

    assert first["ok"] is True and first["already"] is False and first["status"] == "cut"
    assert again == {
        "ok": True,
        "already": True,
        "op": "cut",
        "record_id": record_id,
        "status": "cut",
    }
    assert (
        scalar(
            sql, "SELECT count(*) FROM conveyor.pilot_cut_target WHERE record_id = %s", (record_id,)
        )
        == 1
    )


def test_a_cut_of_another_collection_is_refused_and_changes_nothing(sql: Sql) -> None:
    [record_id] = stage(sql, 1, collection="contracts")

    answer = cut(sql, record_id)

    assert answer["refused"] is True and answer["reason"] == "not_pilot_collection"
    assert (
        scalar(sql, "SELECT status FROM iu_core.iu_staging_record WHERE id = %s", (record_id,))
        == "approved"
    )


def test_a_cut_of_a_record_marked_without_a_payload_is_refused(sql: Sql) -> None:
    record_id = scalar(
        sql,
        "SELECT (iu_core.fn_iu_op_mark('pilot', 'no-payload', 'operator') ->> 'record_id')::bigint",
    )
    sql.execute("SELECT iu_core.fn_iu_op_approve(%s, 'operator')", (record_id,))

    answer = cut(sql, record_id)

    assert answer["reason"] == "payload_missing"
    assert (
        scalar(sql, "SELECT status FROM iu_core.iu_staging_record WHERE id = %s", (record_id,))
        == "approved"
    )


def test_a_switched_off_pilot_refuses_each_step_with_the_pause_to_wait(sql: Sql) -> None:
    [record_id] = stage(sql, 1)
    set_flag(sql, "pilot.cut.enabled", False)
    try:
        answers = [
            scalar(sql, f"SELECT conveyor.{fn}(record_id => %s, actor => 'tests')", (record_id,))
            for fn in ("fn_pilot_cut", "fn_pilot_verify_cut", "fn_pilot_cleanup")
        ]
    finally:
        set_flag(sql, "pilot.cut.enabled", True)

    assert (
        answers
        == [
            {
                "refused": True,
                "reason": "pilot_cut_disabled",
                "flag": "pilot.cut.enabled",
                "record_id": record_id,
                "retry_in_seconds": 5,
            }
        ]
        * 3
    )


def test_verify_and_cleanup_follow_a_cut_and_cleanup_clears_the_payload(sql: Sql) -> None:
    [record_id] = stage(sql, 1)
    cut(sql, record_id)
    verified = scalar(
        sql, "SELECT conveyor.fn_pilot_verify_cut(record_id => %s, actor => 'tests')", (record_id,)
    )
    cleaned = scalar(
        sql, "SELECT conveyor.fn_pilot_cleanup(record_id => %s, actor => 'tests')", (record_id,)
    )

    assert verified["status"] == "verified" and cleaned["status"] == "cleaned"
    assert sql.execute(
        "SELECT payload, cleared_at IS NOT NULL FROM conveyor.pilot_staged_payload"
        " WHERE record_id = %s",
        (record_id,),
    ).fetchone() == (None, True)


def test_mark_refuses_a_key_already_staged_with_sqlstate_23505(sql: Sql) -> None:
    sql.execute("SELECT conveyor.fn_pilot_mark('pilot', 'twice', 'a', 'operator')")

    with pytest.raises(psycopg.errors.UniqueViolation, match="already staged"):
        sql.execute("SELECT conveyor.fn_pilot_mark('pilot', 'twice', 'b', 'operator')")
