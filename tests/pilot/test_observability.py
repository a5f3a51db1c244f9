"""What an operator sees: a record's progress in v_iu_staging_record, the pilot's row in
v_queue_health, and a record stuck between steps, there and in `conveyor health`. No workers run
here, so approved records stay where they are."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import scalar, set_flag, wait_until
from pilot.support import Sql, stage

PILOT_ROW = (
    "SELECT h.component_kind, h.status_hint, h.backlog_count, h.silent_since IS NOT NULL"
    " FROM conveyor.v_queue_health AS h WHERE h.component = 'pilot:pilot'"
)


def test_a_dispatched_record_shows_its_queued_step_job_and_the_pilot_backlog(sql: Sql) -> None:
    [record_id] = stage(sql, 1)
    sql.execute("SELECT conveyor.fn_consumer_dispatch()")

    row = sql.execute(
        "SELECT r.status, r.next_op, r.pilot, r.stuck, r.step_job_kind, r.step_job_status,"
        " r.waiting_seconds >= 0 FROM conveyor.v_iu_staging_record AS r WHERE r.id = %s",
        (record_id,),
    ).fetchone()
    assert row == ("approved", "cut", True, False, "staging.cut", "queued", True)
    assert sql.execute(PILOT_ROW).fetchone() == ("pilot", "fresh", 1, False)


def test_a_record_waiting_longer_than_the_threshold_is_stuck_and_fails_health(
    pilot_dsn: str, sql: Sql
) -> None:
    [record_id] = stage(sql, 1)
    set_flag(sql, "pilot.cut.stuck_threshold_seconds", 0.5)
    try:
        wait_until(
            lambda: scalar(
                sql,
                "SELECT r.stuck FROM conveyor.v_iu_staging_record AS r WHERE r.id = %s",
                (record_id,),
            ),
            timeout=30,
        )
        status_hint, silent = scalar(
            sql,
            "SELECT ARRAY[h.status_hint, (h.silent_since IS NOT NULL)::text]"
            " FROM conveyor.v_queue_health AS h WHERE h.component = 'pilot:pilot'",
        )
        assert (status_hint, silent) == ("stale", "true")
        env = {**os.environ, "CONVEYOR_DATABASE_URL": pilot_dsn, "COLUMNS": "200"}
        health = subprocess.run(
            [sys.executable, "-m", "conveyor", "health"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert health.returncode == 1
        assert "pilot:pilot" in health.stderr  # "not fresh: …, pilot:pilot"
    finally:
        set_flag(sql, "pilot.cut.stuck_threshold_seconds", 300)
    hint = (
        "SELECT h.status_hint FROM conveyor.v_queue_health AS h WHERE h.component = 'pilot:pilot'"
    )
    assert scalar(sql, hint) == "fresh"
