"""`conveyor workflow …` run as a subprocess, exactly as an operator types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from workflow.support import run_step, states, status, step_job

Conn = psycopg.Connection[Any]


def conveyor(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env["CONVEYOR_DATABASE_URL"] = url
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "workflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_operator_emits_shows_approves_and_lists_a_workflow(
    sql: Conn, workflow_dsn: str, queue: str, tmp_path: Path
) -> None:
    steps = tmp_path / "steps.json"
    steps.write_text(
        json.dumps(
            [
                {"key": "mark", "kind": "demo.step", "executor": "dot", "queue": queue},
                {
                    "key": "approve",
                    "kind": "demo.approve",
                    "executor": "operator",
                    "parents": ["mark"],
                },
                {
                    "key": "cut",
                    "kind": "demo.step",
                    "executor": "dot",
                    "queue": queue,
                    "parents": ["approve"],
                },
            ]
        )
    )
    name = f"cli.{queue}"
    registered = conveyor("register", name, str(steps), url=workflow_dsn)
    assert registered.returncode == 0, registered.stderr
    assert f"{name} stored as version 1 (3 steps)" in registered.stdout

    plan = conveyor("emit", name, "--dry-run", url=workflow_dsn)
    assert plan.returncode == 0, plan.stderr
    assert "dry run, nothing written" in plan.stdout and "operator" in plan.stdout

    emitted = conveyor("emit", name, "--params", '{"record_id": 9}', url=workflow_dsn)
    assert emitted.returncode == 0, emitted.stderr
    workflow = int(emitted.stdout.strip())
    run_step(sql, queue, workflow, "mark")

    shown = conveyor("show", str(workflow), url=workflow_dsn)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any("mark" in line and "succeeded" in line for line in lines), shown.stdout
    assert any("└─ approve" in line and "queued" in line for line in lines), shown.stdout
    assert any("└─ cut" in line and "waiting" in line for line in lines), shown.stdout

    approved = conveyor(
        "complete-step", str(workflow), "approve", "--by", "alice", url=workflow_dsn
    )
    assert approved.returncode == 0, approved.stderr
    assert "completed by alice" in approved.stdout
    assert states(sql, workflow)["cut"] == "queued"

    listed = conveyor("list", "--status", "active", url=workflow_dsn)
    assert listed.returncode == 0 and str(workflow) in listed.stdout, listed.stderr

    cancelled = conveyor("cancel", str(workflow), "--reason", "test over", url=workflow_dsn)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "1 steps cancelled" in cancelled.stdout
    assert status(sql, workflow) == "cancelled"
    assert step_job(sql, workflow, "cut") > 0


def test_bad_input_gets_one_line_saying_what_was_wrong(
    sql: Conn, workflow_dsn: str, tmp_path: Path
) -> None:
    cycle = tmp_path / "cycle.json"
    cycle.write_text(
        json.dumps(
            [
                {"key": "a", "kind": "demo.step", "executor": "dot", "parents": ["b"]},
                {"key": "b", "kind": "demo.step", "executor": "dot", "parents": ["a"]},
            ]
        )
    )

    refused = conveyor("register", "cli.cycle", str(cycle), url=workflow_dsn)
    bad_params = conveyor("emit", "staging.cut_pipeline", "--params", "[1]", url=workflow_dsn)
    missing = conveyor("show", "999999999", url=workflow_dsn)
    unknown = conveyor("emit", "cli.nowhere", url=workflow_dsn)

    assert refused.returncode == 1 and "step a: is on a cycle" in refused.stderr, refused.stderr
    assert bad_params.returncode == 2 and "must be a JSON object" in bad_params.stderr
    assert missing.returncode == 1 and "there is no workflow 999999999" in missing.stderr
    assert unknown.returncode == 1 and "not_found" in unknown.stderr
    for result in (refused, bad_params, missing, unknown):
        assert "Traceback" not in result.stderr


def test_a_database_without_phase_6_gets_one_line_saying_what_to_apply(empty_dsn: str) -> None:
    result = conveyor("list", url=empty_dsn)

    assert result.returncode == 1
    assert "phase 6 (MOT workflows) is not applied" in result.stderr
    assert "Traceback" not in result.stderr
