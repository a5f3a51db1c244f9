"""The pilot end to end with real worker and orchestrator processes: the operator marks and
approves, everything after runs by itself; other collections are never cut; the flag pauses
and resumes without losing anything; a verify mismatch dead-letters with its reason."""

from __future__ import annotations

from typing import Any

import psycopg

from conveyor import pilot
from helpers import scalar, set_flag, wait_until, worker_log
from pilot.support import Sql, Starter, all_cleaned, events, stage, statuses, step_jobs


def test_an_approved_record_is_cut_verified_and_cleaned_without_the_operator(
    sql: Sql, start_worker: Starter, start_orchestrator: Starter
) -> None:
    start_orchestrator()
    start_worker("--name", "pilot-w1")
    [record_id] = stage(sql, 1)

    wait_until(lambda: all_cleaned(sql, [record_id]), timeout=60)

    row = sql.execute(
        "SELECT r.approved_by, r.cut_by, r.verified_by, r.cleaned_by, r.cut_target, r.pilot,"
        " r.stuck, r.payload_cleared_at IS NOT NULL, r.step_job_kind, r.step_job_status"
        " FROM conveyor.v_iu_staging_record AS r WHERE r.id = %s",
        (record_id,),
    ).fetchone()
    assert row == (
        "operator",
        "pilot-w1",
        "pilot-w1",
        "pilot-w1",
        "conveyor.pilot_cut_target",
        True,
        False,
        True,
        "staging.cleanup",
        "succeeded",
    )
    target = sql.execute(
        "SELECT t.payload, t.checksum = sp.checksum FROM conveyor.pilot_cut_target AS t"
        " JOIN conveyor.pilot_staged_payload AS sp USING (record_id) WHERE t.record_id = %s",
        (record_id,),
    ).fetchall()
    assert len(target) == 1 and target[0][1] is True
    assert target[0][0].startswith("payload of ")
    wait_until(
        lambda: (
            scalar(
                sql,
                "SELECT count(*) FROM conveyor.consumer_delivery AS cd"
                " JOIN conveyor.event_outbox AS eo ON eo.id = cd.event_id"
                " WHERE cd.consumer = 'pilot.cleaned' AND eo.payload ->> 'record_id' = %s::text",
                (record_id,),
            )
            == 1
        )
    )
    health = sql.execute(
        "SELECT h.component_kind, h.status_hint, h.dead_letter_open_count"
        " FROM conveyor.v_queue_health AS h WHERE h.component = 'pilot:pilot'"
    ).fetchone()
    assert health == ("pilot", "fresh", 0)


def test_a_record_of_another_collection_is_never_cut(
    sql: Sql, start_worker: Starter, start_orchestrator: Starter
) -> None:
    start_orchestrator()
    start_worker()
    others = stage(sql, 3, collection="contracts")
    pilots = stage(sql, 3)

    wait_until(lambda: all_cleaned(sql, pilots), timeout=60)
    # dispatch has passed the other collection's approvals (they came first) and skipped them
    assert scalar(
        sql,
        "SELECT count(*) FROM conveyor.consumer_delivery AS cd"
        " JOIN conveyor.event_outbox AS eo ON eo.id = cd.event_id"
        " WHERE cd.consumer = 'pilot.cut' AND (eo.payload ->> 'record_id')::bigint = ANY(%s)",
        (others,),
    ) == len(others)

    assert statuses(sql, others) == {"approved": 3}
    assert step_jobs(sql, others) == {}
    assert (
        scalar(
            sql,
            "SELECT count(*) FROM conveyor.pilot_cut_target WHERE record_id = ANY(%s)",
            (others,),
        )
        == 0
    )


def test_switching_the_pilot_off_stops_cuts_loses_nothing_and_switching_on_resumes(
    sql: Sql, start_worker: Starter, start_orchestrator: Starter
) -> None:
    set_flag(sql, "pilot.cut.enabled", False)
    try:
        start_orchestrator()
        worker = start_worker()
        ids = stage(sql, 10)

        # every cut job exists and the worker has refused at least one of them (snoozed)
        wait_until(lambda: step_jobs(sql, ids).get(("staging.cut", "queued"), 0) == 10, timeout=60)
        wait_until(lambda: "snoozed" in worker_log(worker) or _snoozed(sql, ids), timeout=60)
        assert statuses(sql, ids) == {"approved": 10}
        assert (
            scalar(
                sql,
                "SELECT count(*) FROM conveyor.pilot_cut_target WHERE record_id = ANY(%s)",
                (ids,),
            )
            == 0
        )
        assert scalar(sql, "SELECT count(*) FROM conveyor.job_dead_letter") == 0
    finally:
        set_flag(sql, "pilot.cut.enabled", True)
    # snoozed jobs come back on their own once their pause is over
    wait_until(lambda: all_cleaned(sql, ids), timeout=90)
    assert step_jobs(sql, ids) == {
        ("staging.cut", "succeeded"): 10,
        ("staging.verify_cut", "succeeded"): 10,
        ("staging.cleanup", "succeeded"): 10,
    }


def _snoozed(sql: psycopg.Connection[Any], ids: list[int]) -> bool:
    """A cut job was claimed and put back for later without spending its attempt."""
    return bool(
        scalar(
            sql,
            "SELECT count(*) FROM conveyor.job_queue AS jq WHERE jq.kind = 'staging.cut'"
            " AND jq.status = 'queued' AND jq.run_at > now()"
            " AND (jq.payload ->> 'record_id')::bigint = ANY(%s)",
            (ids,),
        )
    )


def test_a_target_that_does_not_match_the_staged_checksum_dead_letters_the_verify(
    sql: Sql, start_worker: Starter, start_orchestrator: Starter
) -> None:
    start_orchestrator()
    start_worker(app="pilotapps:cut_only")
    [record_id] = stage(sql, 1)
    wait_until(lambda: statuses(sql, [record_id]) == {"cut": 1}, timeout=60)
    sql.execute(
        "UPDATE conveyor.pilot_cut_target SET payload = 'tampered' WHERE record_id = %s",
        (record_id,),
    )

    start_worker()
    dead = wait_until(
        lambda: sql.execute(
            "SELECT dl.kind, dl.reason, dl.error FROM conveyor.job_dead_letter AS dl"
            " WHERE dl.job -> 'payload' ->> 'record_id' = %s::text",
            (record_id,),
        ).fetchone(),
        timeout=60,
    )

    assert dead[0] == "staging.verify_cut"
    assert dead[1] == "permanent_failure"
    assert "checksum_mismatch" in dead[2]
    assert statuses(sql, [record_id]) == {"cut": 1}
    assert events(sql, [record_id]).get("staging.record_verified") is None


def test_demo_one_pushes_one_record_through_for_the_demo(pilot_dsn: str) -> None:
    with psycopg.connect(pilot_dsn, autocommit=True) as conn:
        record = pilot.demo_one(conn, pilot_dsn, timeout=90)

    assert record.status == "cleaned"
    assert record.pilot
    assert [step for step, by, _at in record.steps if by] == [
        "marked",
        "approved",
        "cut",
        "verified",
        "cleaned",
    ]
