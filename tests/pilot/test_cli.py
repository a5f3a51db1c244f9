"""`conveyor staging …` and `conveyor phase … 5` as subprocesses, exactly as a user types them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from helpers import scalar, wait_until
from pilot.support import Sql, all_cleaned, stage


def conveyor(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CONVEYOR_DATABASE_URL", "DATABASE_URL", "CONVEYOR_TEST_DATABASE_URL"}
    }
    env["COLUMNS"] = "200"
    env["CONVEYOR_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def written(sql: Sql) -> tuple[int, int, int]:
    row = sql.execute(
        "SELECT (SELECT count(*) FROM iu_core.iu_staging_record),"
        " (SELECT count(*) FROM conveyor.pilot_staged_payload),"
        " (SELECT count(*) FROM conveyor.event_outbox)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_phase_5_applies_verifies_rolls_back_and_applies_again_from_the_cli(
    empty_dsn: str,
) -> None:
    for number in ("0", "1", "2", "3", "4", "5"):
        assert conveyor("phase", "ratify", number, "--by", "alice", url=empty_dsn).returncode == 0
        applied = conveyor("phase", "apply", number, "--by", "alice", url=empty_dsn)
        assert applied.returncode == 0, applied.stderr

    verified = conveyor("phase", "verify", "5", url=empty_dsn)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "§7.2" in verified.stdout
    rolled = conveyor("phase", "rollback", "5", "--by", "alice", url=empty_dsn)
    assert rolled.returncode == 0, rolled.stderr
    assert conveyor("phase", "ratify", "5", "--by", "alice", url=empty_dsn).returncode == 0
    again = conveyor("phase", "apply", "5", "--by", "alice", url=empty_dsn)
    assert again.returncode == 0, again.stderr


def test_mark_approve_list_and_show_as_an_operator_would(pilot_dsn: str, sql: Sql) -> None:
    marked = conveyor(
        "staging",
        "mark",
        "pilot",
        "cli-k1",
        "--payload",
        "hello",
        "--actor",
        "alice",
        url=pilot_dsn,
    )
    assert marked.returncode == 0, marked.stderr
    record_id = int(marked.stdout.split()[2].rstrip(":"))
    approved = conveyor("staging", "approve", str(record_id), "--actor", "bob", url=pilot_dsn)
    assert approved.returncode == 0, approved.stderr

    listed = conveyor("staging", "list", "--status", "approved", url=pilot_dsn)
    assert listed.returncode == 0, listed.stderr
    assert "cli-k1" in listed.stdout
    shown = conveyor("staging", "show", str(record_id), url=pilot_dsn)
    assert shown.returncode == 0, shown.stderr
    assert "status approved" in shown.stdout
    assert "alice" in shown.stdout and "bob" in shown.stdout
    assert "payload 5 bytes" in shown.stdout

    again = conveyor("staging", "approve", str(record_id), url=pilot_dsn)
    assert again.returncode == 0
    assert "already approved" in again.stdout


def test_an_unknown_collection_is_one_clear_error_and_writes_nothing(
    pilot_dsn: str, sql: Sql
) -> None:
    before = written(sql)
    result = conveyor("staging", "mark", "contrcts", "k1", "--payload", "x", url=pilot_dsn)

    assert result.returncode == 1
    assert "Error: fn_pilot_mark: collection 'contrcts' is unknown" in result.stderr
    assert "pilot.cut.collection" in result.stderr
    assert "Traceback" not in result.stderr
    assert written(sql) == before


def test_a_key_already_staged_is_one_clear_error_and_writes_nothing(
    pilot_dsn: str, sql: Sql
) -> None:
    first = conveyor("staging", "mark", "pilot", "dup-1", "--payload", "one", url=pilot_dsn)
    assert first.returncode == 0, first.stderr
    before = written(sql)

    result = conveyor("staging", "mark", "pilot", "dup-1", "--payload", "two", url=pilot_dsn)

    assert result.returncode == 1
    assert "Error: fn_pilot_mark: record_key 'dup-1' is already staged" in result.stderr
    assert "Traceback" not in result.stderr
    assert written(sql) == before
    assert (
        scalar(
            sql,
            "SELECT sp.payload FROM conveyor.pilot_staged_payload AS sp"
            " JOIN iu_core.iu_staging_record AS r ON r.id = sp.record_id"
            " WHERE r.record_key = 'dup-1'",
        )
        == "one"
    )


def test_a_payload_over_the_limit_is_one_clear_error_and_writes_nothing(
    pilot_dsn: str, sql: Sql
) -> None:
    limit = int(
        scalar(sql, "SELECT value::int FROM dot_config WHERE key = 'pilot.cut.payload_max_bytes'")
    )
    before = written(sql)

    result = conveyor(
        "staging", "mark", "pilot", "big-1", "--payload", "x" * (limit + 1), url=pilot_dsn
    )

    assert result.returncode == 1
    assert f"payload is {limit + 1} bytes, over the limit of {limit} bytes" in result.stderr
    assert "Traceback" not in result.stderr
    assert written(sql) == before


def test_approving_or_showing_an_unknown_record_is_one_clear_error(pilot_dsn: str) -> None:
    approve = conveyor("staging", "approve", "999999", url=pilot_dsn)
    show = conveyor("staging", "show", "999999", url=pilot_dsn)

    assert approve.returncode == 1
    assert "record_not_found" in approve.stderr and "Traceback" not in approve.stderr
    assert show.returncode == 1
    assert "Error: there is no staging record 999999" in show.stderr


def test_up_pilot_runs_the_orchestrator_and_pilot_workers_until_sigterm(
    pilot_dsn: str, sql: Sql
) -> None:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": pilot_dsn}
    up = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "up", "--pilot", "--workers", "2", "--interval", "0.2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ids = stage(sql, 5)
        wait_until(lambda: all_cleaned(sql, ids), timeout=120)
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            assert up.wait(timeout=60) == 0
        finally:
            if up.poll() is None:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()


def test_up_needs_either_an_app_or_the_pilot(pilot_dsn: str) -> None:
    neither = conveyor("up", url=pilot_dsn)
    both = conveyor("up", "--pilot", "--app", "x:y", url=pilot_dsn)

    assert neither.returncode == both.returncode == 2
    assert "give either --app MODULE:REGISTRY or --pilot" in neither.stderr
