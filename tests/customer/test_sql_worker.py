"""The whole phase 7 flow through a real `conveyor worker` process: the default rule classifier
and template drafter, the approve step (a person's, or auto), the send protocol; no PII in any
job's payload or result, no dead letter."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from customer.sqlsupport import Conn, account, answer, customer_dsn, ingest, sql

__all__ = ["customer_dsn", "sql"]

TESTS = Path(__file__).parents[1]


@pytest.fixture
def start_worker(customer_dsn: str, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": customer_dsn,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        with (tmp_path / "worker.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "conveyor",
                    "worker",
                    "--app",
                    "customer.sqlsupport:registry",
                    "--queue",
                    "customer",
                    "--executor",
                    "external_worker",
                    "--poll-interval",
                    "0.05",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_for(sql: Conn, ids: list[int], state: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        row = sql.execute(
            "SELECT count(*) FROM conveyor.customer_message WHERE id = ANY(%s) AND state = %s",
            (ids, state),
        ).fetchone()
        if row == (len(ids),):
            return
        time.sleep(0.1)
    log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    states = sql.execute(
        "SELECT id, state FROM conveyor.customer_message WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    raise AssertionError(f"not all {state}: {states}\n{log}")


def test_a_person_approves_and_the_worker_sends(
    sql: Conn, start_worker: Callable[[], Any], tmp_path: Path
) -> None:
    start_worker()
    got = ingest(sql, account(), 1, subject="Invoice 42", body="Please send my invoice again")
    mid = int(got["id"])
    _wait_for(sql, [mid], "awaiting_approval", tmp_path)
    body = answer(sql, "SELECT conveyor.fn_customer_message_body(%s)", (mid,))
    answer(
        sql,
        "SELECT conveyor.fn_customer_message_approve(%s, %s, 'alice')",
        (mid, body["draft_sha256"]),
    )
    _wait_for(sql, [mid], "sent", tmp_path)

    row = sql.execute(
        "SELECT classification, approved_by FROM conveyor.customer_message WHERE id = %s", (mid,)
    ).fetchone()
    assert row == ("billing", "alice")
    assert body["draft_subject"] == "Re: Invoice 42"
    assert "billing" in body["draft_text"]


def test_with_auto_approval_every_message_runs_unattended_without_pii_in_jobs(
    sql: Conn, start_worker: Callable[[], Any], tmp_path: Path
) -> None:
    sql.execute("SELECT conveyor.fn_config_set('customer.approve_required', 'false')")
    try:
        start_worker()
        acct = account()
        bodies = [
            "my payment failed",
            "the app is broken, help",
            "I won the lottery",
            "hi",
            "this is unacceptable, a complaint",
        ]
        ids = [
            int(ingest(sql, acct, n, body=text, subject="s")["id"])
            for n, text in enumerate(bodies, 1)
        ]
        _wait_for(sql, ids, "sent", tmp_path)
    finally:
        sql.execute("SELECT conveyor.fn_config_set('customer.approve_required', 'true')")

    labels = sql.execute(
        "SELECT classification FROM conveyor.customer_message WHERE id = ANY(%s) ORDER BY id",
        (ids,),
    ).fetchall()
    jobs = sql.execute(
        "SELECT jq.payload, jq.result, jq.status FROM conveyor.job_queue AS jq"
        " JOIN conveyor.customer_message AS cm ON cm.workflow_id = jq.workflow_id"
        " WHERE cm.id = ANY(%s)",
        (ids,),
    ).fetchall()
    dead = sql.execute(
        "SELECT count(*) FROM conveyor.job_dead_letter WHERE job ->> 'kind' LIKE 'customer%%'"
    ).fetchone()
    assert [label for (label,) in labels] == ["billing", "support", "spam", "other", "complaint"]
    assert len(jobs) == 4 * len(ids)
    assert {status for _, _, status in jobs} == {"succeeded"}
    for payload, result, _ in jobs:
        assert set(payload) == {"message_id"}
        assert not any(text in str(result) for text in bodies)
    assert dead == (0,)
