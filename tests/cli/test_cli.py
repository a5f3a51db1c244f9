"""`conveyor …` run as a subprocess, exactly as a user types it."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from cli.running import conveyor


def test_phase_status_lists_every_phase_on_a_new_database(empty_dsn: str) -> None:
    result = conveyor("phase", "status", url=empty_dsn)
    assert result.returncode == 0, result.stderr
    for title in ("0 platform", "1 job substrate", "7 customer messages"):
        assert title in result.stdout


def test_apply_without_ratification_exits_1_saying_what_to_run(empty_dsn: str) -> None:
    result = conveyor("phase", "apply", "0", url=empty_dsn)
    assert result.returncode == 1
    assert (
        "Error: phase 0 is not ratified; run `conveyor phase ratify 0 --by NAME`" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_ratify_apply_verify_and_report_as_a_user_would(empty_dsn: str) -> None:
    assert conveyor("phase", "ratify", "0", "--by", "alice", url=empty_dsn).returncode == 0
    applied = conveyor("phase", "apply", "0", "--by", "alice", url=empty_dsn)
    assert applied.returncode == 0, applied.stderr
    verified = conveyor("phase", "verify", "0", url=empty_dsn)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    status = conveyor("phase", "status", url=empty_dsn)
    assert "alice" in status.stdout
    report = conveyor("report", url=empty_dsn)
    assert "conveyor.event_outbox" in report.stdout


def test_verify_exits_1_and_lists_the_failed_checks(empty_dsn: str) -> None:
    for number in ("0", "1"):
        conveyor("phase", "ratify", number, "--by", "t", url=empty_dsn)
        assert conveyor("phase", "apply", number, url=empty_dsn).returncode == 0
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        # A broken phase 1 (live jobs are healthy: a gate is re-runnable on a busy database).
        conn.execute("DROP INDEX conveyor.job_queue_claim_idx")
    result = conveyor("phase", "verify", "1", url=empty_dsn)
    assert result.returncode == 1
    assert "gate failed" in result.stderr
    assert "job_queue_claim_idx" in result.stdout + result.stderr


def test_plan_shows_the_sql_and_leaves_the_database_unchanged(empty_dsn: str) -> None:
    result = conveyor("phase", "plan", "0", url=empty_dsn)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE conveyor.event_outbox" in result.stdout
    assert "dry run" in result.stdout
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('conveyor.event_outbox')").fetchone() == (None,)


def test_demo_applies_phases_and_runs_jobs_on_a_database_url(empty_dsn: str) -> None:
    result = conveyor("demo", url=empty_dsn)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "claimed and completed" in result.stdout
    with psycopg.connect(empty_dsn) as conn:
        done = conn.execute(
            "SELECT count(*) FROM conveyor.job_queue WHERE queue = 'demo' AND status = 'succeeded'"
        ).fetchone()
    assert done == (25,)  # 5 by hand through the SQL functions, 20 by a worker process
    assert "red zones: demo-worker" in result.stdout
    assert "phase 1 gate" not in result.stdout  # the gate tables only with -v
    assert len(result.stdout.splitlines()) < 40
    assert "next, try:" in result.stdout
    assert "health: green" in result.stdout
    health = conveyor("health", url=empty_dsn)
    assert health.returncode == 0, health.stdout + health.stderr
    first_alert = _alert_line(result.stdout)

    again = conveyor("demo", "-v", url=empty_dsn)
    assert again.returncode == 0, again.stderr
    assert "already applied" in again.stdout
    assert "tick" in again.stdout and "watchdog alerts (system/queue_worker_silent" in again.stdout
    second_alert = _alert_line(again.stdout)
    assert second_alert.endswith(" silent") and second_alert != first_alert  # its own run's
    assert conveyor("health", url=empty_dsn).returncode == 0


def _alert_line(stdout: str) -> str:
    """The alerts a demo run reported ("#12 silent"), from its one-line account."""
    line = next(r for r in stdout.splitlines() if r.startswith("watchdog alerts for demo-worker"))
    return line.split(": ", 1)[1]


def _postmaster_running(data_dir: Path) -> bool:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_demo_without_a_url_uses_the_embedded_server_and_leaves_no_process(tmp_path: Path) -> None:
    base = Path("/tmp") / f"conveyor-cli-{os.getpid()}"
    base.mkdir(mode=0o755, exist_ok=True)
    data_dir = base / "data"
    try:
        result = conveyor("--data-dir", str(data_dir), "demo", url=None, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "embedded PostgreSQL" in result.stderr
        assert "claimed and completed" in result.stdout
        assert not _postmaster_running(data_dir)
        second = conveyor("--data-dir", str(data_dir), "demo", url=None, timeout=180)
        assert second.returncode == 0, second.stderr
        assert "phase 0: already applied" in second.stdout
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    ("payload", "message"),
    [("{nope", "not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_enqueue_with_a_bad_payload_is_a_usage_error(payload: str, message: str) -> None:
    result = conveyor(
        "enqueue", "demo.echo", "--payload", payload, url="postgresql://unused@127.0.0.1:1/x"
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_an_unreachable_database_is_a_one_line_error_without_the_password() -> None:
    result = conveyor(
        "phase", "status", url="postgresql://alice:sentinel-pw-77@127.0.0.1:1/nothing", timeout=60
    )
    assert result.returncode == 1
    assert "Error: cannot connect to" in result.stderr
    assert "sentinel-pw-77" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_tick_runs_one_round_and_reports_each_step(empty_dsn: str) -> None:
    for number in ("0", "1", "2"):
        conveyor("phase", "ratify", number, "--by", "t", url=empty_dsn)
        assert conveyor("phase", "apply", number, url=empty_dsn).returncode == 0
    result = conveyor("tick", url=empty_dsn)
    assert result.returncode == 0, result.stderr
    for step in ("lease_reaper", "outbound", "retention"):
        assert step in result.stdout
    assert "job_substrate_disabled" in result.stdout
